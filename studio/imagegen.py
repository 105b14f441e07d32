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
import functools
import hashlib
import io
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx2
import openai
from django.conf import settings
from PIL import Image, UnidentifiedImageError

from studio.billing import Answer
from studio.pricing import UsageReading, combine_readings, read_usage

log = logging.getLogger(__name__)

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
    usage: UsageReading
    provider_request_id: str
    http_status: int
    answer: Answer = Answer.COMPLETE  # INCOMPLETE: a stream broke after some images
    note: str = ""  # what went missing, for the request's ledger note


@dataclass(frozen=True)
class PartialImage:
    """A streamed preview: which image of the request it belongs to, and its place in it."""

    image_number: int
    partial_image_index: int
    image: GeneratedImage


OnPartial = Callable[[PartialImage], None]
OnEvent = Callable[[], None]  # called for every streamed event: the call is alive


@dataclass
class ImageGenError(Exception):
    """A call that did not produce usable images, classified for the retry policy and for
    billing: `answer` says how far the call got (studio.billing.Answer) and `usage` what the
    provider reported before it failed, if anything."""

    reason: str
    message: str
    http_status: int | None = None
    code: str = ""
    provider_request_id: str = ""
    retry_after: float | None = None
    usage: UsageReading | None = field(default=None)
    answer: Answer = Answer.INCOMPLETE

    def answered(self, raw, usage: UsageReading | None = None) -> ImageGenError:
        """Mark this failure as one inside a 200 answer (`raw`): the content was unusable."""
        self.answer = Answer.INCOMPLETE
        self.http_status = raw.status_code
        self.provider_request_id = raw.headers.get("x-request-id", "")
        self.usage = usage
        return self

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"

    @property
    def is_policy(self) -> bool:
        return self.reason == "policy"


def client_for(route) -> openai.OpenAI:
    """The route's client: one per base URL, key and timeout in this process, reused by
    every call (and thread) so connections and TLS sessions are not set up per call."""
    api_key = route.api_key()
    if api_key is None and route.is_sandbox:
        api_key = SANDBOX_PLACEHOLDER_KEY
    return _client(route.endpoint(), api_key, float(route.timeout_seconds))


@functools.lru_cache(maxsize=64)
def _client(base_url: str, api_key: str | None, timeout: float) -> openai.OpenAI:
    # The SDK's default pool opens at most 1,000 connections per client; a worker host with
    # more calls in flight than that would queue calls behind the pool, not the provider.
    limits = httpx2.Limits(
        max_connections=settings.PROVIDER_MAX_CONNECTIONS,
        max_keepalive_connections=settings.PROVIDER_MAX_KEEPALIVE,
    )
    return openai.OpenAI(
        base_url=base_url,
        api_key=api_key,
        timeout=timeout,
        max_retries=0,
        http_client=openai.DefaultHttpxClient(limits=limits),
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


def generate(
    route, request, on_partial: OnPartial | None = None, on_event: OnEvent | None = None
) -> GenerationResult:
    """Call images.generate on the route for this request; raise ImageGenError on failure.

    With partial_images > 0 the call streams; each preview goes to `on_partial` as it arrives
    and every event calls `on_event` (the worker extends its lease there).
    """
    return _call(
        client_for(route).images, generation_params(request), request, on_partial, on_event
    )


def edit(
    route,
    request,
    inputs: EditInputs,
    on_partial: OnPartial | None = None,
    on_event: OnEvent | None = None,
) -> GenerationResult:
    """Call images.edit with the request's images and mask; raise ImageGenError on failure.

    The images go as (filename, bytes, mime) tuples so the multipart parts carry the image
    type the API checks before it reads a byte; the mask applies to the first image.
    """
    params = generation_params(request)
    # One image goes as `image`, several as the `image[]` array, as OpenAI's examples send them.
    params["image"] = inputs.images[0] if len(inputs.images) == 1 else inputs.images
    if inputs.mask is not None:
        params["mask"] = inputs.mask
    return _call(client_for(route).images, params, request, on_partial, on_event, edit=True)


def _call(images_api, params: dict, request, on_partial, on_event, *, edit: bool = False):
    method = images_api.with_raw_response.edit if edit else images_api.with_raw_response.generate
    streaming = request.partial_images > 0
    if streaming:
        params = {**params, "stream": True, "partial_images": request.partial_images}
    try:
        raw = method(**params)
    except openai.APIError as error:
        raise classify(error) from error
    if streaming:
        return _streamed_result(raw, request, on_partial, on_event)
    return _result(raw, request)


def _streamed_result(
    raw, request, on_partial: OnPartial | None, on_event: OnEvent | None
) -> GenerationResult:
    """Read an Image API stream: `*.partial_image` events, then one `*.completed` per image;
    other events are skipped.

    Anything that breaks the stream after its 200 (an `error` event, a dropped or timed-out
    connection, an unreadable final image) is an incomplete answer: with no image it is an
    ImageGenError, possibly billed, with the status, request ID and any usage seen kept;
    after some images, those are kept and the result says what went missing.
    """
    readings: list[UsageReading] = []
    images: list[GeneratedImage] = []
    failure: ImageGenError | None = None
    try:
        with raw.parse() as stream:  # closes the connection if reading ends early
            for event in stream:
                if on_event is not None:
                    on_event()
                kind = str(getattr(event, "type", "")).rsplit(".", 1)[-1]
                if kind not in ("partial_image", "completed"):
                    continue
                if kind == "completed":
                    readings.append(read_usage(getattr(event, "usage", None)))
                try:
                    image = decode_image(
                        getattr(event, "b64_json", None), expected=request.output_format
                    )
                except ImageGenError:
                    if kind == "partial_image":
                        # A broken preview is only a preview: the final image may still be good.
                        log.warning("skipping an unreadable partial image")
                        continue
                    raise
                if kind == "partial_image":
                    if on_partial is not None:
                        index = getattr(event, "partial_image_index", 0) or 0
                        on_partial(PartialImage(len(images), index, image))
                else:
                    images.append(image)
    except ImageGenError as error:
        failure = error
    except (openai.APIError, httpx2.HTTPError) as error:
        failure = _broken_stream(error)
    except Exception as error:  # an event the SDK could not make sense of
        failure = ImageGenError("unknown", f"The stream could not be read ({error!r}).")
    usage = combine_readings(readings) or read_usage(None)
    if not images:
        failure = failure or ImageGenError("invalid_output", "The stream ended without an image.")
        raise failure.answered(raw, usage)
    return _delivered(raw, request, images, usage, failure)


def _delivered(raw, request, images, usage, failure=None) -> GenerationResult:
    """A 200 that delivered images: all that were asked for, or fewer (then a note says so,
    and a failure after some images makes the answer incomplete), never more than n."""
    note, answer = "", Answer.COMPLETE
    if failure is not None:
        note = (
            f"The answer broke after {len(images)} of {request.n} image(s) ({failure.message}); "
            "the images that arrived are kept."
        )
        answer = Answer.INCOMPLETE
    elif len(images) < request.n:
        note = f"The provider delivered {len(images)} of the {request.n} images asked for."
    elif len(images) > request.n:
        note = f"The provider sent {len(images)} images for {request.n}; the first are kept."
        images = images[: request.n]
    return GenerationResult(
        images, usage, raw.headers.get("x-request-id", ""), raw.status_code, answer, note
    )


def _result(raw, request) -> GenerationResult:
    try:
        response = raw.parse()
        usage = read_usage(getattr(response, "usage", None))
        items = getattr(response, "data", None)
        items = items if isinstance(items, list) else []
    except Exception as error:  # a 200 whose body is not an ImagesResponse
        raise ImageGenError(
            "invalid_output", f"The provider's answer could not be read ({error})."
        ).answered(raw) from error
    images = []
    try:
        for item in items:
            images.append(
                decode_image(getattr(item, "b64_json", None), expected=request.output_format)
            )
    except ImageGenError as error:
        raise error.answered(raw, usage) from None
    if not images:
        raise ImageGenError("invalid_output", "The provider answered without any image.").answered(
            raw, usage
        )
    return _delivered(raw, request, images, usage)


@dataclass(frozen=True)
class AssistantResult:
    """One Responses API turn: the text, the image_generation_call results, and both usages.

    `usage` is the image tool's (priced like any image call), `mainline_usage` the mainline
    model's own tokens."""

    text: str
    images: list[GeneratedImage]
    response_id: str
    usage: UsageReading
    mainline_usage: UsageReading
    provider_request_id: str
    http_status: int
    mainline_model: str = ""  # the model the response says answered
    answer: Answer = Answer.COMPLETE
    note: str = ""


def responses_params(route, request, previous_response_id: str | None) -> dict:
    """The Responses API body of an assistant turn: the mainline model calling the image tool."""
    tool = {
        "type": "image_generation",
        "model": request.provider_model,
        "size": request.size,
        "quality": request.quality,
        "output_format": request.output_format,
    }
    if request.partial_images:
        tool["partial_images"] = request.partial_images
    params = {"model": route.assistant_model, "input": request.prompt, "tools": [tool]}
    if previous_response_id:
        params["previous_response_id"] = previous_response_id
    return params


def respond(
    route,
    request,
    previous_response_id: str | None = None,
    on_partial: OnPartial | None = None,
    on_event: OnEvent | None = None,
) -> AssistantResult:
    """One assistant turn through client.responses.create; streamed when partial previews
    are asked for (`response.image_generation_call.partial_image`, `partial_image_b64`)."""
    params = responses_params(route, request, previous_response_id)
    streaming = request.partial_images > 0
    try:
        raw = client_for(route).responses.with_raw_response.create(**params, stream=streaming)
    except openai.APIError as error:
        raise classify(error) from error
    try:
        parsed = raw.parse()
        response = (
            _read_response_stream(parsed, request, on_partial, on_event) if streaming else parsed
        )
        usage, mainline_usage = _image_tool_usage(response), _mainline_usage(response)
        status = str(getattr(response, "status", None) or "unknown")
        output = getattr(response, "output", None)
        calls = [
            item
            for item in (output if isinstance(output, list) else [])
            if getattr(item, "type", "") == "image_generation_call"
        ]
        images = [
            decode_image(getattr(item, "result", None), expected=request.output_format)
            for item in calls
        ]
        text = str(getattr(response, "output_text", "") or "")
    except ImageGenError as error:
        raise error.answered(raw) from None
    except (openai.APIError, httpx2.HTTPError) as error:
        raise _broken_stream(error).answered(raw) from error
    except Exception as error:  # a 200 whose body is not a Response
        raise ImageGenError(
            "invalid_output", f"The provider's answer could not be read ({error!r})."
        ).answered(raw) from error
    note, answer = "", Answer.COMPLETE
    if status != "completed":
        if not images:
            raise ImageGenError(
                "provider_5xx" if status == "failed" else "unknown",
                f"The response ended {status}, without an image.",
            ).answered(raw, usage)
        note = f"The response ended {status}; the image it had made is kept."
        answer = Answer.INCOMPLETE
    return AssistantResult(
        text=text,
        images=images,
        response_id=str(getattr(response, "id", "") or ""),
        usage=usage,
        mainline_usage=mainline_usage,
        provider_request_id=raw.headers.get("x-request-id", ""),
        http_status=raw.status_code,
        mainline_model=str(getattr(response, "model", "") or ""),
        answer=answer,
        note=note,
    )


def _read_response_stream(
    stream, request, on_partial: OnPartial | None, on_event: OnEvent | None = None
):
    """Hand each partial preview over as it arrives; the final response comes whole in
    `response.completed` (or `response.failed`). An `error` event raises openai.APIError."""
    finished = None
    calls_done = 0
    with stream:
        for event in stream:
            if on_event is not None:
                on_event()
            if event.type == "response.image_generation_call.partial_image":
                if on_partial is not None:
                    try:
                        image = decode_image(
                            event.partial_image_b64, expected=request.output_format
                        )
                    except ImageGenError:
                        log.warning("skipping an unreadable partial image")
                        continue
                    on_partial(PartialImage(calls_done, event.partial_image_index, image))
            elif event.type == "response.image_generation_call.completed":
                calls_done += 1
            elif event.type in ("response.completed", "response.failed", "response.incomplete"):
                finished = event.response
    if finished is None:
        raise ImageGenError("invalid_output", "The stream ended without a final response.")
    return finished


def _mainline_usage(response) -> UsageReading:
    """The mainline model's own tokens, in whatever shape the provider reported them."""
    return read_usage(getattr(response, "usage", None), outputs="text")


def _image_tool_usage(response) -> UsageReading:
    """The image tool's tokens (`tool_usage.image_gen`), when the provider reports them."""
    extra = response.model_dump().get("tool_usage") if hasattr(response, "model_dump") else None
    image_gen = extra.get("image_gen") if isinstance(extra, dict) else None
    return read_usage(image_gen)


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
        if isinstance(error.__cause__, httpx2.ConnectTimeout | httpx2.PoolTimeout):
            return ImageGenError(
                "timeout", "The provider could not be reached in time.", answer=Answer.NOT_SENT
            )
        return ImageGenError(
            "timeout",
            "The provider did not answer within the route's timeout.",
            answer=Answer.NO_ANSWER,
        )
    if isinstance(error, openai.APIConnectionError):
        sent = not isinstance(error.__cause__, httpx2.ConnectError)
        return ImageGenError(
            "connection",
            f"{'The connection to the provider broke' if sent else 'Could not reach the provider'}"
            f": {error.message}",
            answer=Answer.NO_ANSWER if sent else Answer.NOT_SENT,
        )
    if not isinstance(error, openai.APIStatusError):
        return _broken_stream(error)

    status = error.status_code
    body = error.body if isinstance(error.body, dict) else {}
    detail = body.get("error", body) if isinstance(body.get("error", body), dict) else {}
    code = str(detail.get("code") or "")
    param = str(detail.get("param") or "")
    message = str(detail.get("message") or error.message)
    request_id = error.response.headers.get("x-request-id", "") if error.response else ""
    retry_after = _retry_after_seconds(error.response.headers.get("retry-after"))

    if status in GATEWAY_TIMEOUT_STATUSES:
        # A gateway that gave up waiting: the provider behind it may still finish and bill.
        return ImageGenError(
            "timeout",
            f"The provider's gateway gave up waiting (HTTP {status}): {message}",
            status,
            code,
            request_id,
            retry_after,
            answer=Answer.NO_ANSWER,
        )
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
    return ImageGenError(
        reason, message, status, code, request_id, retry_after, answer=Answer.ERROR
    )


# 408 Request Timeout, 499 client closed (nginx), 504 Gateway Timeout, 524 (Cloudflare's
# origin timeout): the answer of a proxy that stopped waiting, not of the image model.
GATEWAY_TIMEOUT_STATUSES = {408, 499, 504, 524}

STREAM_ERROR_REASONS = {
    "server_error": "provider_5xx",
    "rate_limit_exceeded": "rate_limit",
    "moderation_blocked": "policy",
    "content_policy_violation": "policy",
    "invalid_request_error": "validation",
}


def _broken_stream(error: Exception) -> ImageGenError:
    """A stream that broke after its 200: an `error` event (classified by its code/type), or
    a connection that dropped or timed out while reading. The caller adds the 200's status,
    request ID and any usage seen."""
    if isinstance(error, httpx2.TimeoutException | openai.APITimeoutError):
        return ImageGenError("timeout", "The stream stopped sending within the route's timeout.")
    if isinstance(error, httpx2.HTTPError | openai.APIConnectionError):
        return ImageGenError("connection", f"The stream's connection broke: {error}.")
    body = error.body if isinstance(error.body, dict) else {}
    code = str(getattr(error, "code", None) or body.get("code") or "")
    kind = str(getattr(error, "type", None) or body.get("type") or "")
    reason = STREAM_ERROR_REASONS.get(code) or STREAM_ERROR_REASONS.get(kind) or "unknown"
    return ImageGenError(reason, error.message or str(error), None, code)


def _retry_after_seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


# --- The Batch API (Files upload, batches.create, retrieve, output and error files) ----------

BATCH_ENDPOINT = "/v1/images/generations"


@dataclass(frozen=True)
class BatchState:
    """What the provider says of a batch."""

    id: str
    status: str  # validating, in_progress, finalizing, completed, failed, expired, cancel...
    output_file_id: str | None
    error_file_id: str | None

    @property
    def is_over(self) -> bool:
        return self.status in ("completed", "failed", "expired", "cancelled")


def batch_line(request) -> dict:
    """One line of a batch's input file: the request's Image API body, its ID as custom_id."""
    return {
        "custom_id": str(request.id),
        "method": "POST",
        "url": BATCH_ENDPOINT,
        "body": generation_params(request),
    }


def submit_batch(route, lines: list[dict], metadata: dict[str, str]) -> tuple[str, str]:
    """Upload the lines as a JSONL file (purpose batch) and create a 24 h batch of them;
    returns (input file id, batch id). Raises ImageGenError (not sent, or an error answer)."""
    data = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    client = client_for(route)
    try:
        uploaded = client.files.create(
            file=("campaign.jsonl", data, "application/jsonl"), purpose="batch"
        )
        batch = client.batches.create(
            input_file_id=uploaded.id,
            endpoint=BATCH_ENDPOINT,
            completion_window="24h",
            metadata=metadata,
        )
    except openai.APIError as error:
        raise classify(error) from error
    return uploaded.id, batch.id


def batch_state(route, batch_id: str) -> BatchState:
    try:
        batch = client_for(route).batches.retrieve(batch_id)
    except openai.APIError as error:
        raise classify(error) from error
    return BatchState(batch.id, batch.status, batch.output_file_id, batch.error_file_id)


def batch_file(route, file_id: str | None) -> bytes:
    """A batch's output or error file; b"" when the batch has none."""
    if not file_id:
        return b""
    try:
        return client_for(route).files.content(file_id).read()
    except openai.APIError as error:
        raise classify(error) from error


def batch_line_result(response: dict, request) -> GenerationResult:
    """The GenerationResult of a batch output line's `response` (status 200, an
    ImagesResponse body). Raises ImageGenError (invalid_output, with the usage read) when
    the body holds no usable image."""
    body = response.get("body") if isinstance(response.get("body"), dict) else {}
    usage = read_usage(body.get("usage"))
    items = body.get("data") if isinstance(body.get("data"), list) else []
    provider_request_id = str(response.get("request_id") or "")
    images = []
    try:
        for item in items:
            b64 = item.get("b64_json") if isinstance(item, dict) else None
            images.append(decode_image(b64, expected=request.output_format))
    except ImageGenError as error:
        error.answer, error.http_status, error.usage = Answer.INCOMPLETE, 200, usage
        error.provider_request_id = provider_request_id
        raise
    if not images:
        raise ImageGenError(
            "invalid_output",
            "The batch line answered without any image.",
            http_status=200,
            provider_request_id=provider_request_id,
            answer=Answer.INCOMPLETE,
            usage=usage,
        )
    note = ""
    if len(images) < request.n:
        note = f"The provider delivered {len(images)} of the {request.n} images asked for."
    return GenerationResult(images[: request.n], usage, provider_request_id, 200, note=note)


def cancel_batch(route, batch_id: str) -> BatchState:
    """Ask the provider to stop a batch; lines it has not run are not billed."""
    try:
        batch = client_for(route).batches.cancel(batch_id)
    except openai.APIError as error:
        raise classify(error) from error
    return BatchState(batch.id, batch.status, batch.output_file_id, batch.error_file_id)
