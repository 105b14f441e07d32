"""The one module that talks to image providers, through the official openai SDK.

A client is built per route (its base URL, the key from the environment variable the route
names, its timeout, and no SDK retries: each paid call must be exactly one Attempt row).
What comes back is checked here, where it enters: base64 decoded, the image opened and
verified with Pillow, hashed. SDK exceptions become one ImageGenError with a reason from
the closed set in DESIGN.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
from dataclasses import dataclass, field

import openai
from PIL import Image, UnidentifiedImageError

from studio.pricing import Usage

SANDBOX_PLACEHOLDER_KEY = "sandbox"
PIL_FORMATS = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp"}

# Pillow refuses images above this many pixels before decoding them; the largest legal
# gpt-image-2 output is 8,294,400.
Image.MAX_IMAGE_PIXELS = 8_294_400 * 2


@dataclass(frozen=True)
class GeneratedImage:
    data: bytes
    sha256: str
    width: int
    height: int
    format: str


@dataclass(frozen=True)
class GenerationResult:
    images: list[GeneratedImage]
    usage: Usage | None
    provider_request_id: str
    http_status: int


@dataclass
class ImageGenError(Exception):
    """A call that did not produce usable images, classified for the retry policy."""

    reason: str
    message: str
    http_status: int | None = None
    code: str = ""
    provider_request_id: str = ""
    retry_after: float | None = None
    billed_usage: Usage | None = field(default=None)

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"

    @property
    def is_policy(self) -> bool:
        return self.reason == "policy"


def client_for(route) -> openai.OpenAI:
    api_key = route.api_key()
    if api_key is None and route.is_sandbox:
        api_key = SANDBOX_PLACEHOLDER_KEY
    return openai.OpenAI(
        base_url=route.endpoint(),
        api_key=api_key,
        timeout=float(route.timeout_seconds),
        max_retries=0,
    )


def generation_params(request) -> dict:
    """The Image API body for a request, leaving out what the model would reject."""
    params = {
        "model": request.provider_model,
        "prompt": request.prompt,
        "n": request.n,
        "size": request.size,
        "quality": request.quality,
        "output_format": request.output_format,
        "background": request.background,
    }
    if request.output_format in ("jpeg", "webp") and request.output_compression is not None:
        params["output_compression"] = request.output_compression
    return params


FileTuple = tuple[str, bytes, str]  # (filename, bytes, mime type), as the SDK takes a file


@dataclass(frozen=True)
class EditInputs:
    """What an edit uploads: the images (source first, then references) and the mask."""

    images: list[FileTuple]
    mask: FileTuple | None = None


def generate(route, request) -> GenerationResult:
    """Call images.generate on the route for this request; raise ImageGenError on failure."""
    client = client_for(route)
    try:
        raw = client.images.with_raw_response.generate(**generation_params(request))
        response = raw.parse()
    except openai.APIError as error:
        raise classify(error) from error
    return _result(raw, response, request)


def edit(route, request, inputs: EditInputs) -> GenerationResult:
    """Call images.edit with the request's images and mask; raise ImageGenError on failure.

    The images go as (filename, bytes, mime) tuples so the multipart parts carry the image
    type the API checks before it reads a byte; the mask applies to the first image.
    """
    client = client_for(route)
    params = generation_params(request)
    # One image goes as `image`, several as the `image[]` array, as OpenAI's examples send them.
    params["image"] = inputs.images[0] if len(inputs.images) == 1 else inputs.images
    if inputs.mask is not None:
        params["mask"] = inputs.mask
    try:
        raw = client.images.with_raw_response.edit(**params)
        response = raw.parse()
    except openai.APIError as error:
        raise classify(error) from error
    return _result(raw, response, request)


def _result(raw, response, request) -> GenerationResult:
    provider_request_id = raw.headers.get("x-request-id", "")
    usage = Usage.from_api(response.usage.model_dump() if response.usage else None)
    images = []
    for item in response.data or []:
        try:
            images.append(decode_image(item.b64_json, expected=request.output_format))
        except ImageGenError as error:
            error.provider_request_id = provider_request_id
            error.http_status = raw.status_code
            error.billed_usage = usage
            raise
    if not images:
        raise ImageGenError(
            "invalid_output",
            "The provider answered without any image.",
            http_status=raw.status_code,
            provider_request_id=provider_request_id,
            billed_usage=usage,
        )
    return GenerationResult(images, usage, provider_request_id, raw.status_code)


def decode_image(b64: str | None, *, expected: str | None = None) -> GeneratedImage:
    """Decode base64 from the API and prove it is a whole image of an allowed format."""
    if not b64:
        raise ImageGenError("invalid_output", "The provider returned an empty image.")
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise ImageGenError("invalid_output", "The provider returned invalid base64.") from None
    try:
        with Image.open(io.BytesIO(data)) as probe:
            probe.verify()
        # verify() leaves the image unusable; open again and decode every pixel.
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            pil_format, width, height = image.format, image.width, image.height
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageGenError(
            "invalid_output", f"The provider returned bytes that are not a readable image ({exc})."
        ) from None
    image_format = PIL_FORMATS.get(pil_format or "")
    if image_format is None:
        raise ImageGenError("invalid_output", f"The provider returned a {pil_format} image.")
    if expected and image_format != expected:
        raise ImageGenError(
            "invalid_output", f"Asked for {expected}, the provider returned {image_format}."
        )
    return GeneratedImage(data, hashlib.sha256(data).hexdigest(), width, height, image_format)


def classify(error: openai.APIError) -> ImageGenError:
    """Map an SDK exception to a retry reason: timeout, rate_limit, provider_5xx, ..."""
    if isinstance(error, openai.APITimeoutError):
        return ImageGenError("timeout", "The provider did not answer within the route's timeout.")
    if isinstance(error, openai.APIConnectionError):
        return ImageGenError("connection", f"Could not reach the provider: {error.message}")
    if not isinstance(error, openai.APIStatusError):
        return ImageGenError("unknown", str(error))

    status = error.status_code
    body = error.body if isinstance(error.body, dict) else {}
    detail = body.get("error", body) if isinstance(body.get("error", body), dict) else {}
    code = str(detail.get("code") or "")
    param = str(detail.get("param") or "")
    message = str(detail.get("message") or error.message)
    request_id = error.response.headers.get("x-request-id", "") if error.response else ""
    retry_after = _retry_after_seconds(error.response.headers.get("retry-after"))

    if status == 429:
        reason = "rate_limit"
    elif status >= 500:
        reason = "provider_5xx"
    elif code in ("moderation_blocked", "content_policy_violation"):
        reason = "policy"
    elif param == "size" or message.lower().startswith("invalid size"):
        reason = "size"
    elif 400 <= status < 500:
        reason = "validation"
    else:
        reason = "unknown"
    return ImageGenError(reason, message, status, code, request_id, retry_after)


def _retry_after_seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
