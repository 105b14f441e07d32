"""Check Image API request fields the way the API does, into a small typed object.

Generations send a JSON body; edits send multipart form fields, which arrive as strings and
are first read into the same JSON types by `form_fields`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from studio import imagerules

T = TypeVar("T", str, int)

MODELS = ("gpt-image-2", "gpt-image-2-2026-04-21")
DEFAULT_MODEL = "gpt-image-2"
DEFAULT_SIZE = (1024, 1024)
DEFAULT_COMPRESSION = 100
MODERATIONS = ("low", "auto")
INPUT_FIDELITIES = ("high", "low")
# gpt-image-2 takes no input_fidelity (the SDK: "For gpt-image-2, omit this parameter").
MODELS_WITHOUT_INPUT_FIDELITY = MODELS
MIN_IMAGES, MAX_IMAGES = 1, 10
MIN_COMPRESSION, MAX_COMPRESSION = 0, 100
MIN_PARTIAL_IMAGES, MAX_PARTIAL_IMAGES = 0, 3
# Accepted and ignored: they change nothing about a sandbox image.
IGNORED_PARAMETERS = ("user", "safety_identifier")
SHARED_PARAMETERS = (
    "prompt",
    "model",
    "n",
    "size",
    "quality",
    "output_format",
    "output_compression",
    "background",
    "stream",
    "partial_images",
    *IGNORED_PARAMETERS,
)
KNOWN_PARAMETERS = frozenset((*SHARED_PARAMETERS, "moderation"))
EDIT_PARAMETERS = frozenset((*SHARED_PARAMETERS, "input_fidelity"))
# Multipart sends every value as text; these are read back into JSON types.
INTEGER_PARAMETERS = ("n", "output_compression", "partial_images")
BOOLEAN_PARAMETERS = ("stream",)
INTEGER_TEXT = re.compile(r"^[+-]?\d{1,9}$")


class InvalidRequest(Exception):
    """A request the Image API would answer with 400 invalid_request_error."""

    def __init__(
        self,
        message: str,
        *,
        param: str | None,
        code: str | None,
        error_type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.error_type = error_type


@dataclass(frozen=True)
class ImageRequest:
    prompt: str
    model: str
    n: int
    width: int
    height: int
    quality: str
    output_format: str
    output_compression: int
    background: str
    partial_images: int = 0
    stream: bool = False

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def resolved_quality(self) -> str:
        """The quality actually rendered: the sandbox, like the estimates, takes auto as high."""
        return "high" if self.quality == "auto" else self.quality


def read_image_request(body: bytes) -> ImageRequest:
    """Parse and check a JSON generation body; raise InvalidRequest naming the first bad one."""
    return image_request_from_fields(read_json_object(body), KNOWN_PARAMETERS)


def read_json_object(body: bytes) -> dict:
    try:
        fields = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError):
        fields = None
    if not isinstance(fields, dict):
        raise InvalidRequest(
            "We could not parse the JSON body of your request. The API expects a JSON object.",
            param=None,
            code=None,
        )
    return fields


def form_fields(form: Iterable[tuple[str, list[str]]]) -> dict:
    """Multipart text fields (`QueryDict.lists()`) as JSON carries them: numbers, booleans,
    and None for "" (what the SDK sends for an explicit None)."""
    fields: dict[str, object] = {}
    for name, values in form:
        value = values[-1] if values else ""
        if value == "":
            fields[name] = None
        elif name in INTEGER_PARAMETERS and INTEGER_TEXT.match(value):
            fields[name] = int(value)
        elif name in BOOLEAN_PARAMETERS and value.lower() in ("true", "false"):
            fields[name] = value.lower() == "true"
        else:
            fields[name] = value
    return fields


def asks_for_auto_size(fields: dict) -> bool:
    return fields.get("size") in (None, "auto")


def image_request_from_fields(fields: dict, known: frozenset[str]) -> ImageRequest:
    """Check the fields one by one, in the order the API reports them; "auto" size is 1024x1024."""
    for name in fields:
        if name not in known:
            raise InvalidRequest(
                f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter"
            )
    prompt = _read_prompt(fields)
    model = read_choice(fields, "model", MODELS, DEFAULT_MODEL)
    n = _read_image_count(fields)
    width, height = _read_size(fields)
    quality = read_choice(fields, "quality", imagerules.QUALITIES, "auto")
    output_format = read_choice(fields, "output_format", imagerules.OUTPUT_FORMATS, "png")
    output_compression = _read_compression(fields, output_format)
    background = read_background(fields)
    if "moderation" in known:
        read_choice(fields, "moderation", MODERATIONS, "auto")
    if "input_fidelity" in known:
        refuse_input_fidelity(fields, model)
    partial_images = _read_partial_images(fields)
    stream = read_flag(fields, "stream")
    return ImageRequest(
        prompt=prompt,
        model=model,
        n=n,
        width=width,
        height=height,
        quality=quality,
        output_format=output_format,
        output_compression=output_compression,
        background=background,
        partial_images=partial_images,
        stream=stream,
    )


def refuse_input_fidelity(fields: dict, model: str, *, prefix: str = "") -> None:
    """An input_fidelity that is not null is checked, then refused as the API refuses it for
    gpt-image-2: every model the sandbox serves."""
    if fields.get("input_fidelity") is None:
        return
    read_choice(fields, "input_fidelity", INPUT_FIDELITIES, "low", prefix=prefix)
    if model in MODELS_WITHOUT_INPUT_FIDELITY:
        raise InvalidRequest(
            f"Invalid parameter: '{prefix}input_fidelity' is not supported with {model}; omit it.",
            param=prefix + "input_fidelity",
            code="unsupported_parameter",
        )


def read_size_value(size: object, param: str = "size") -> tuple[int, int] | None:
    """A WIDTHxHEIGHT size checked against the rules; None for "auto" or no size."""
    if size is None or size == "auto":
        return None
    if not isinstance(size, str):
        raise InvalidRequest(
            f"Invalid type for '{param}': expected a string, but got {json_type(size)} instead.",
            param=param,
            code="invalid_type",
        )
    parsed = imagerules.parse_size(size)
    if parsed is None:
        raise InvalidRequest(
            f"Invalid size '{size}'. Expected 'auto' or WIDTHxHEIGHT in pixels, e.g. '1536x864'.",
            param=param,
            code="invalid_value",
        )
    problems = imagerules.size_problems(*parsed)
    if problems:
        raise InvalidRequest(
            f"Invalid size '{size}'. " + " ".join(problems), param=param, code="invalid_value"
        )
    return parsed


def _read_prompt(fields: dict) -> str:
    if "prompt" not in fields or fields["prompt"] is None:
        raise InvalidRequest(
            "Missing required parameter: 'prompt'.",
            param="prompt",
            code="missing_required_parameter",
        )
    prompt = expect_type(fields, "prompt", str)
    if not prompt:
        raise InvalidRequest(
            "Invalid 'prompt': empty string. Expected a string with minimum length 1, "
            "but got an empty string instead.",
            param="prompt",
            code="empty_string",
        )
    if len(prompt) > imagerules.MAX_PROMPT_CHARS:
        raise InvalidRequest(
            f"Invalid 'prompt': string too long. Expected a string with maximum length "
            f"{imagerules.MAX_PROMPT_CHARS}, but got a string with length {len(prompt)} instead.",
            param="prompt",
            code="string_above_max_length",
        )
    return prompt


def read_choice(
    fields: dict, name: str, allowed: tuple[str, ...], default: str, *, prefix: str = ""
) -> str:
    """A string field that must be one of `allowed`; `prefix` names where the fields sit
    (e.g. "tools[0].") in the error's param."""
    if fields.get(name) is None:
        return default
    value = expect_type(fields, name, str, prefix=prefix)
    if value not in allowed:
        supported = ", ".join(f"'{choice}'" for choice in allowed)
        raise InvalidRequest(
            f"Invalid value: '{value}'. Supported values are: {supported}.",
            param=prefix + name,
            code="invalid_value",
        )
    return value


def read_integer(
    fields: dict, name: str, default: int, minimum: int, maximum: int, *, prefix: str = ""
) -> int:
    if fields.get(name) is None:
        return default
    value = expect_type(fields, name, int, prefix=prefix)
    _check_range(prefix + name, value, minimum, maximum)
    return value


def read_background(fields: dict, *, prefix: str = "") -> str:
    background = read_choice(fields, "background", imagerules.BACKGROUNDS, "auto", prefix=prefix)
    if background == "transparent":
        raise InvalidRequest(
            "Transparent background is not supported for this model.",
            param=prefix + "background",
            code="unsupported_value",
        )
    return background


def _read_image_count(fields: dict) -> int:
    return read_integer(fields, "n", MIN_IMAGES, MIN_IMAGES, MAX_IMAGES)


def _read_size(fields: dict) -> tuple[int, int]:
    return read_size_value(fields.get("size")) or DEFAULT_SIZE


def _read_partial_images(fields: dict) -> int:
    return read_integer(
        fields, "partial_images", MIN_PARTIAL_IMAGES, MIN_PARTIAL_IMAGES, MAX_PARTIAL_IMAGES
    )


def read_flag(fields: dict, name: str) -> bool:
    value = fields.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidRequest(
            f"Invalid type for '{name}': expected a boolean, but got {json_type(value)} instead.",
            param=name,
            code="invalid_type",
        )
    return value


def _read_compression(fields: dict, output_format: str) -> int:
    if fields.get("output_compression") is None:
        return DEFAULT_COMPRESSION
    compression = expect_type(fields, "output_compression", int)
    if output_format == "png":
        raise InvalidRequest(
            "output_compression is only supported for the jpeg and webp output formats.",
            param="output_compression",
            code="unsupported_value",
        )
    _check_range("output_compression", compression, MIN_COMPRESSION, MAX_COMPRESSION)
    return compression


def expect_type(fields: dict, name: str, expected: type[T], *, prefix: str = "") -> T:
    value = fields[name]
    # bool is an int to Python but not to a JSON schema.
    if not isinstance(value, expected) or isinstance(value, bool):
        wanted = "an integer" if expected is int else "a string"
        raise InvalidRequest(
            f"Invalid type for '{prefix}{name}': expected {wanted}, "
            f"but got {json_type(value)} instead.",
            param=prefix + name,
            code="invalid_type",
        )
    return value


def _check_range(name: str, value: int, minimum: int, maximum: int) -> None:
    if value < minimum:
        raise InvalidRequest(
            f"Invalid '{name}': integer below minimum value. "
            f"Expected a value >= {minimum}, but got {value} instead.",
            param=name,
            code="integer_below_min_value",
        )
    if value > maximum:
        raise InvalidRequest(
            f"Invalid '{name}': integer above maximum value. "
            f"Expected a value <= {maximum}, but got {value} instead.",
            param=name,
            code="integer_above_max_value",
        )


def json_type(value: object) -> str:
    """How an OpenAI error message names the JSON type of a value."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null"
