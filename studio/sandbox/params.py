"""Check a CreateImageRequest body the way the Image API does, into a small typed object."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TypeVar

from studio import imagerules

T = TypeVar("T", str, int)

MODELS = ("gpt-image-2", "gpt-image-2-2026-04-21")
DEFAULT_MODEL = "gpt-image-2"
DEFAULT_SIZE = (1024, 1024)
DEFAULT_COMPRESSION = 100
MODERATIONS = ("low", "auto")
MIN_IMAGES, MAX_IMAGES = 1, 10
MIN_COMPRESSION, MAX_COMPRESSION = 0, 100
# Accepted and ignored: they change nothing about a sandbox image.
IGNORED_PARAMETERS = ("user", "safety_identifier", "partial_images")
KNOWN_PARAMETERS = frozenset(
    (
        "prompt",
        "model",
        "n",
        "size",
        "quality",
        "output_format",
        "output_compression",
        "background",
        "moderation",
        "stream",
        *IGNORED_PARAMETERS,
    )
)


class InvalidRequest(Exception):
    """A request the Image API would answer with 400 invalid_request_error."""

    def __init__(self, message: str, *, param: str | None, code: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


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

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def resolved_quality(self) -> str:
        """The quality actually rendered: the sandbox, like the estimates, takes auto as high."""
        return "high" if self.quality == "auto" else self.quality


def read_image_request(body: bytes) -> ImageRequest:
    """Parse and check a JSON body; raise InvalidRequest naming the first bad parameter."""
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
    for name in fields:
        if name not in KNOWN_PARAMETERS:
            raise InvalidRequest(
                f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter"
            )
    prompt = _read_prompt(fields)
    model = _read_choice(fields, "model", MODELS, DEFAULT_MODEL)
    n = _read_image_count(fields)
    width, height = _read_size(fields)
    quality = _read_choice(fields, "quality", imagerules.QUALITIES, "auto")
    output_format = _read_choice(fields, "output_format", imagerules.OUTPUT_FORMATS, "png")
    output_compression = _read_compression(fields, output_format)
    background = _read_background(fields)
    _read_choice(fields, "moderation", MODERATIONS, "auto")
    if fields.get("stream"):
        raise InvalidRequest(
            "The sandbox does not stream image generations yet.",
            param="stream",
            code="unsupported_value",
        )
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
    )


def _read_prompt(fields: dict) -> str:
    if "prompt" not in fields or fields["prompt"] is None:
        raise InvalidRequest(
            "Missing required parameter: 'prompt'.",
            param="prompt",
            code="missing_required_parameter",
        )
    prompt = _expect_type(fields, "prompt", str)
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


def _read_choice(fields: dict, name: str, allowed: tuple[str, ...], default: str) -> str:
    if fields.get(name) is None:
        return default
    value = _expect_type(fields, name, str)
    if value not in allowed:
        supported = ", ".join(f"'{choice}'" for choice in allowed)
        raise InvalidRequest(
            f"Invalid value: '{value}'. Supported values are: {supported}.",
            param=name,
            code="invalid_value",
        )
    return value


def _read_image_count(fields: dict) -> int:
    if fields.get("n") is None:
        return MIN_IMAGES
    n = _expect_type(fields, "n", int)
    _check_range("n", n, MIN_IMAGES, MAX_IMAGES)
    return n


def _read_size(fields: dict) -> tuple[int, int]:
    size = fields.get("size")
    if size is None or size == "auto":
        return DEFAULT_SIZE
    size = _expect_type(fields, "size", str)
    parsed = imagerules.parse_size(size)
    if parsed is None:
        raise InvalidRequest(
            f"Invalid size '{size}'. Expected 'auto' or WIDTHxHEIGHT in pixels, e.g. '1536x864'.",
            param="size",
            code="invalid_value",
        )
    problems = imagerules.size_problems(*parsed)
    if problems:
        raise InvalidRequest(
            f"Invalid size '{size}'. " + " ".join(problems), param="size", code="invalid_value"
        )
    return parsed


def _read_compression(fields: dict, output_format: str) -> int:
    if fields.get("output_compression") is None:
        return DEFAULT_COMPRESSION
    compression = _expect_type(fields, "output_compression", int)
    if output_format == "png":
        raise InvalidRequest(
            "output_compression is only supported for the jpeg and webp output formats.",
            param="output_compression",
            code="unsupported_value",
        )
    _check_range("output_compression", compression, MIN_COMPRESSION, MAX_COMPRESSION)
    return compression


def _read_background(fields: dict) -> str:
    background = _read_choice(fields, "background", imagerules.BACKGROUNDS, "auto")
    if background == "transparent":
        raise InvalidRequest(
            "Transparent background is not supported for this model.",
            param="background",
            code="unsupported_value",
        )
    return background


def _expect_type(fields: dict, name: str, expected: type[T]) -> T:
    value = fields[name]
    # bool is an int to Python but not to a JSON schema.
    if not isinstance(value, expected) or isinstance(value, bool):
        wanted = "an integer" if expected is int else "a string"
        raise InvalidRequest(
            f"Invalid type for '{name}': expected {wanted}, but got {_json_type(value)} instead.",
            param=name,
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


def _json_type(value: object) -> str:
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
