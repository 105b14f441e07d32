"""The OpenAI-compatible door: `POST /v1/images/generations` and `POST /v1/images/edits`.

A script that points OpenAI's SDK at the studio's `/v1` with a studio API token as its key
gets OpenAI's wire format back, while the request goes the studio's normal way: the same
form checks as the composer and the edit page (size and upload rules, route capabilities),
the submission limit, budgets, the estimate and ledger, the route's model mapping, the
worker, and the review queue.

The views are async: after submitting, a call waits for the worker in `api.waiting` (one
database poll a tick for all waiting clients) and holds no thread while it waits. Serve
them with an ASGI server (`gunicorn config.asgi -k uvicorn_worker.UvicornWorker`).

Errors come in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`:
401 a missing, unknown, expired or revoked token; 403 a user without the designer role;
400 a rule broken (named), an unknown parameter (named); 429 over the per-minute submission
limit (with Retry-After); 402 over a budget (not 429: OpenAI's SDKs retry a 429, and a
budget refusal will not change within the month). A request that ends badly in the studio
answers with `x-should-retry: false`, so the SDK never sends (and bills) it again.
With `stream` the answer is OpenAI's server-sent events: the previews as the worker stores
them, then the images (under ASGI they go out as they come; WSGI sends them at the end).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.http.multipartparser import MultiPartParserError
from django.urls import reverse
from django.utils.datastructures import MultiValueDict
from django.views.decorators.csrf import csrf_exempt

from api.models import ApiToken, TokenRefused
from api.waiting import in_database, wait_for_end
from studio import imagerules
from studio.forms import CUSTOM_SIZE, SOURCE_SIZE, ComposerForm, EditForm
from studio.middleware import CONTROL_CHARACTERS
from studio.models import (
    DEFAULT_MODEL,
    Attempt,
    BudgetExceeded,
    GenerationRequest,
    OutputImage,
    Route,
    Status,
    SubmissionFlood,
)
from studio.pricing import money
from studio.sandbox.params import SHARED_PARAMETERS
from studio.sandbox.responses import error_response
from studio.sandbox.streaming import sse, stream_error_data
from studio.views import DESIGNER_ROLES, has_role

MODELS = (DEFAULT_MODEL,)
# OpenAI's image parameters (the sandbox's list: one place names them), the response format
# the SDKs send, and the studio's own `route` (a route by name).
SHARED = (*SHARED_PARAMETERS, "response_format", "route")
GENERATION_PARAMETERS = frozenset((*SHARED, "moderation", "style"))
EDIT_PARAMETERS = frozenset((*SHARED, "input_fidelity"))
IMAGE_FIELDS = ("image", "image[]")
MASK_FIELD = "mask"
# Form field -> the OpenAI parameter it came from, to name it in an error.
PARAM_OF_FIELD = {
    "width": "size",
    "height": "size",
    "source": "image",
    "references": "image",
    "source_output": "image",
    "__all__": None,
}


class DoorError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        error_type: str = "invalid_request_error",
        headers: dict | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.error_type, self.headers = error_type, headers or {}

    def response(self) -> JsonResponse:
        response = error_response(
            self.status, self.message, error_type=self.error_type, param=self.param, code=self.code
        )
        for name, value in self.headers.items():
            response[name] = value
        return response


def invalid(message: str, param: str | None, code: str | None = "invalid_value") -> DoorError:
    return DoorError(400, message, param=param, code=code)


@dataclass
class Call:
    """A door call read from its body: fields as the studio's forms take them."""

    fields: dict
    files: MultiValueDict = field(default_factory=MultiValueDict)


# --- Reading the call ---------------------------------------------------------------------


def user_for(request: HttpRequest):
    """The token's user, who must be a designer (or admin); DoorError 401/403 else."""
    header = request.headers.get("Authorization", "")
    scheme, _, raw = header.partition(" ")
    try:
        token = ApiToken.authenticate(raw if scheme.lower() == "bearer" else "")
    except TokenRefused as refusal:
        raise DoorError(401, refusal.message, code=refusal.code) from None
    if not has_role(token.user, *DESIGNER_ROLES):
        raise DoorError(
            403,
            f"The token's user {token.user.get_username()} has no designer role, so it cannot "
            "submit images. Ask an admin for the designer role.",
            error_type="permission_error",
            code="insufficient_role",
        )
    return token.user


def read_json(request: HttpRequest) -> dict:
    content_type = request.content_type or ""
    if content_type != "application/json":
        raise invalid(
            f"Invalid Content-Type header ({content_type or 'none'}), expected application/json.",
            None,
            "invalid_content_type",
        )
    try:
        body = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        raise invalid("We could not parse the JSON body of your request: expected an object.", None)
    return body


def read_multipart(request: HttpRequest) -> tuple[dict, MultiValueDict]:
    content_type = request.content_type or ""
    if content_type != "multipart/form-data":
        raise invalid(
            f"Invalid Content-Type header ({content_type or 'none'}), expected "
            "multipart/form-data.",
            None,
            "invalid_content_type",
        )
    try:
        form, files = request.POST, request.FILES
    except (MultiPartParserError, SuspiciousOperation) as problem:
        raise invalid(
            f"We could not parse the multipart body of your request ({problem}).", None
        ) from None
    for name in files:
        if name not in (*IMAGE_FIELDS, MASK_FIELD):
            raise invalid(f"Unknown parameter: '{name}'.", name, "unknown_parameter")
    for name in (*IMAGE_FIELDS, MASK_FIELD):
        if name in form:
            raise invalid(
                f"Invalid type for '{name.rstrip('[]')}': expected a file, but got a string.",
                name.rstrip("[]"),
                "invalid_type",
            )
    # Multipart sends text; "" is what the SDK sends for an explicit None.
    fields = {name: (values[-1] if values[-1] != "" else None) for name, values in form.lists()}
    return fields, files


def check_fields(fields: dict, known: frozenset[str]) -> dict:
    """Refuse unknown parameters and values of the wrong type; drop explicit nulls."""
    unknown = sorted(name for name in fields if name not in known)
    if unknown:
        names = ", ".join(f"'{name}'" for name in unknown)
        raise invalid(f"Unknown parameter: {names}.", unknown[0], "unknown_parameter")
    values = {}
    for name, value in fields.items():
        if value is None:
            continue
        if isinstance(value, list | dict) or (isinstance(value, bool) and name != "stream"):
            raise invalid(
                f"Invalid type for '{name}': got {type(value).__name__}.", name, "invalid_type"
            )
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        value = value if isinstance(value, bool) else str(value)
        if isinstance(value, str) and CONTROL_CHARACTERS.search(value):
            raise invalid(f"'{name}' holds a control character (such as NUL).", name)
        values[name] = value
    return values


def form_data(values: dict, edit: bool) -> dict:
    """The door's parameters as the composer's (or edit page's) form fields."""
    model = values.get("model", DEFAULT_MODEL)
    if model not in MODELS:
        raise invalid(
            f"The studio serves {DEFAULT_MODEL} (each route maps it to its provider's model); "
            f"'{model}' is not offered.",
            "model",
            "model_not_found",
        )
    streaming = wants_stream(values)
    if values.get("partial_images") not in (None, "0") and not streaming:
        raise invalid(
            "'partial_images' are sent as events of a stream: set 'stream' to true too.",
            "partial_images",
            "unsupported_value",
        )
    if values.get("response_format") not in (None, "b64_json"):
        raise invalid(
            f"{DEFAULT_MODEL} answers with b64_json only; 'url' is not supported.",
            "response_format",
            "unsupported_value",
        )
    if values.get("style") is not None:
        raise invalid(
            "'style' is a dall-e-3 parameter; gpt-image-2 takes none.", "style", "unsupported_value"
        )
    if values.get("moderation") not in (None, "auto"):
        raise invalid(
            "The studio's routes moderate at 'auto'; leave 'moderation' out.",
            "moderation",
            "unsupported_value",
        )
    if values.get("input_fidelity") is not None:
        raise invalid(
            f"{DEFAULT_MODEL} takes no input_fidelity (it always keeps input detail): omit it.",
            "input_fidelity",
            "unsupported_value",
        )
    data = {
        "prompt": values.get("prompt", ""),
        "route": route_for(values.get("route")).pk,
        "quality": values.get("quality", "auto"),
        "output_format": values.get("output_format", "png"),
        "background": values.get("background", "auto"),
        "n": values.get("n", "1"),
        "partial_images": values.get("partial_images", "0"),
    }
    if "output_compression" in values:
        data["output_compression"] = values["output_compression"]
    size = values.get("size", "auto")
    presets = dict(imagerules.SIZE_PRESETS)
    if size == "auto":
        data["size"] = SOURCE_SIZE if edit else "1024x1024"
    elif size in presets:
        data["size"] = size
    elif (parsed := imagerules.parse_size(size)) is not None:
        data.update(size=CUSTOM_SIZE, width=str(parsed[0]), height=str(parsed[1]))
    else:
        raise invalid(
            f"Invalid value for 'size': '{size[:40]}'. Use 'auto' or WIDTHxHEIGHT, e.g. 1024x1536.",
            "size",
        )
    return data


def wants_stream(values: dict) -> bool:
    stream = str(values.get("stream", False)).lower()
    if stream not in ("true", "false", "1", "0"):
        raise invalid("'stream' is true or false.", "stream", "invalid_type")
    return stream in ("true", "1")


def route_for(name: str | None) -> Route:
    """The route by name; else OPENAI_DOOR_ROUTE; else the composer's default (the sandbox)."""
    routes = Route.objects.filter(enabled=True)
    name = name or settings.OPENAI_DOOR_ROUTE
    if name:
        route = routes.filter(name=name).first()
        if route is None:
            raise invalid(f"No enabled route named '{name[:100]}'.", "route", "route_not_found")
        return route
    route = next((r for r in routes if r.is_sandbox), None) or routes.first()
    if route is None:
        raise DoorError(
            503,
            "The studio has no enabled route.",
            error_type="server_error",
            headers={"x-should-retry": "false"},
        )
    return route


def form_problems(form: ComposerForm) -> DoorError:
    """Every broken rule, each named by the parameter it came from."""
    parts, first = [], None
    for name, messages in form.errors.items():
        param = PARAM_OF_FIELD.get(name, name)
        first = first or param
        for message in messages:
            parts.append(f"{param}: {message}" if param else message)
    return invalid(" ".join(parts), first)


# --- Submitting and answering -------------------------------------------------------------


def submit(user, call: Call, edit: bool) -> GenerationRequest:
    """Check with the composer's (or edit page's) own form and submit through it."""
    form = EditForm(call.fields, call.files, user=user) if edit else ComposerForm(call.fields)
    if not form.is_valid():
        raise form_problems(form)
    try:
        return form.submit(user)
    except SubmissionFlood as flood:
        raise DoorError(
            429,
            str(flood),
            code="rate_limit_exceeded",
            error_type="requests",
            headers={"Retry-After": "60"},
        ) from None
    except BudgetExceeded as refusal:
        raise DoorError(
            402, str(refusal), code="budget_exceeded", error_type="insufficient_quota"
        ) from None


def edit_files(files: MultiValueDict) -> MultiValueDict:
    """The SDK's `image` / `image[]` and `mask` as the edit form's source, references, mask."""
    images = [item for name in IMAGE_FIELDS for item in files.getlist(name)]
    if not images:
        raise invalid(
            "An edit needs 'image': the image to edit (PNG, JPEG or WebP).",
            "image",
            "missing_required_parameter",
        )
    masks = files.getlist(MASK_FIELD)
    if len(masks) > 1:
        raise invalid("Send at most one 'mask'.", "mask")
    mapped = MultiValueDict({"source": images[:1], "references": images[1:]})
    if masks:
        mapped["mask"] = masks[0]
    return mapped


def images_body(generation: GenerationRequest) -> dict:
    """ImagesResponse, as OpenAI's Image API answers it."""
    outputs = generation.outputs.filter(kind=OutputImage.Kind.FINAL).order_by("index")
    body: dict = {
        "created": int((generation.finished_at or generation.created_at).timestamp()),
        "data": [{"b64_json": base64.b64encode(output.read()).decode()} for output in outputs],
        "output_format": generation.output_format,
        "size": generation.size,
    }
    if generation.background in ("transparent", "opaque"):
        body["background"] = generation.background
    if generation.quality != "auto":
        body["quality"] = generation.quality
    attempt = generation.attempts.filter(outcome=Attempt.Outcome.SUCCEEDED).first()
    if attempt is not None:
        text, image = attempt.input_text_tokens, attempt.input_image_tokens
        output = attempt.output_image_tokens + attempt.output_text_tokens
        body["usage"] = {
            "input_tokens": text + image,
            "output_tokens": output,
            "total_tokens": text + image + output,
            "input_tokens_details": {"text_tokens": text, "image_tokens": image},
            "output_tokens_details": {
                "image_tokens": attempt.output_image_tokens,
                "text_tokens": attempt.output_text_tokens,
            },
        }
    return body


def answer(generation: GenerationRequest, waited: bool) -> JsonResponse:
    generation.refresh_from_db()
    where = reverse("studio:request-detail", args=[generation.id])
    if not waited or not generation.is_terminal:
        error = DoorError(
            504,
            f"The studio's request {generation.id} is still {generation.status} after "
            f"{settings.OPENAI_DOOR_WAIT_SECONDS} s; it goes on, and its images will be at "
            f"{where} and in the API. Do not send it again.",
            error_type="server_error",
            code="timeout",
            headers={"x-should-retry": "false"},
        )
        response = error.response()
    elif generation.status == Status.SUCCEEDED:
        response = JsonResponse(images_body(generation))
    else:
        response = failure(generation).response()
    response["x-request-id"] = str(generation.id)
    response["x-studio-request"] = where
    return response


def failure(generation: GenerationRequest) -> DoorError:
    message = generation.failure_message or generation.get_status_display()
    if generation.status == Status.REFUSED:
        return DoorError(
            400,
            message,
            error_type="image_generation_user_error",
            code="moderation_blocked",
            headers={"x-should-retry": "false"},
        )
    if generation.status == Status.CANCELLED:
        return DoorError(
            409,
            f"The request {generation.id} was cancelled in the studio.",
            code="cancelled",
            headers={"x-should-retry": "false"},
        )
    _cost, exposure = generation.cost_and_exposure()
    note = ""
    if generation.may_have_been_billed():
        up_to = f", up to {money(exposure)}" if exposure is not None else ""
        note = f" It may have been billed{up_to}; the studio does not send it again."
    return DoorError(
        502,
        f"The studio's request {generation.id} failed: {message}.{note}",
        error_type="server_error",
        code=generation.failure_reason or "failed",
        headers={"x-should-retry": "false"},
    )


async def door(request: HttpRequest, edit: bool):
    if request.method != "POST":
        response = error_response(
            405, f"Invalid method for URL ({request.method} {request.path}): use POST."
        )
        response["Allow"] = "POST"
        return response
    try:
        generation, streaming = await in_database(checked_submission, request, edit)
    except DoorError as error:
        return error.response()
    if streaming:
        response = StreamingHttpResponse(
            stream_events(generation, edit), content_type="text/event-stream; charset=utf-8"
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        response["x-request-id"] = str(generation.id)
        return response
    waited = await wait_for_end(generation.id, settings.OPENAI_DOOR_WAIT_SECONDS)
    return await in_database(answer, generation, waited)


def checked_submission(request: HttpRequest, edit: bool) -> tuple[GenerationRequest, bool]:
    """Authenticate, read and check the call, and submit it (DoorError when refused)."""
    user = user_for(request)
    if edit:
        fields, files = read_multipart(request)
        values = check_fields(fields, EDIT_PARAMETERS)
        call = Call(form_data(values, True), edit_files(files))
    else:
        values = check_fields(read_json(request), GENERATION_PARAMETERS)
        call = Call(form_data(values, False))
    return submit(user, call, edit), wants_stream(values)


# --- Streaming: previews as they are stored, then the images -------------------------------


def image_event_fields(generation: GenerationRequest) -> dict:
    return {
        "created_at": int(generation.created_at.timestamp()),
        "size": generation.size,
        "quality": generation.quality,
        "background": generation.background,
        "output_format": generation.output_format,
    }


def new_events(generation: GenerationRequest, edit: bool, sent: set) -> tuple[list, bool]:
    """Events for previews not yet sent; at the end the completed images (or an error).
    Returns (events as (name, data), whether the stream is over)."""
    prefix = "image_edit" if edit else "image_generation"
    generation.refresh_from_db()
    events = []
    previews = generation.outputs.filter(kind=OutputImage.Kind.PARTIAL).order_by("index")
    for preview in previews.exclude(pk__in=sent):
        sent.add(preview.pk)
        events.append(
            (
                f"{prefix}.partial_image",
                {
                    "type": f"{prefix}.partial_image",
                    "b64_json": base64.b64encode(preview.read()).decode(),
                    "partial_image_index": preview.index % max(1, generation.partial_images),
                    **image_event_fields(generation),
                },
            )
        )
    if not generation.is_terminal:
        return events, False
    if generation.status != Status.SUCCEEDED:
        error = failure(generation)
        events.append(
            (
                "error",
                stream_error_data(error.message, error_type=error.error_type, code=error.code),
            )
        )
        return events, True
    body = images_body(generation)
    for image in body["data"]:
        events.append(
            (
                f"{prefix}.completed",
                {
                    "type": f"{prefix}.completed",
                    "b64_json": image["b64_json"],
                    **image_event_fields(generation),
                    "usage": body.get("usage", {}),
                },
            )
        )
    return events, True


async def stream_events(generation: GenerationRequest, edit: bool):
    """Server-sent events as OpenAI streams them, looking for new previews every poll."""
    sent: set = set()
    deadline = time.monotonic() + settings.OPENAI_DOOR_WAIT_SECONDS
    while True:
        events, over = await in_database(new_events, generation, edit, sent)
        for name, data in events:
            yield sse(name, data)
        if over:
            return
        if time.monotonic() > deadline:
            yield sse(
                "error",
                stream_error_data(
                    f"The studio's request {generation.id} is still running; it goes on. Do not "
                    "send it again.",
                    code="timeout",
                ),
            )
            return
        await asyncio.sleep(settings.OPENAI_DOOR_POLL_SECONDS)


@csrf_exempt
async def images_generations(request: HttpRequest) -> JsonResponse:
    """OpenAI's `POST /images/generations` (JSON), answered once the worker is done."""
    return await door(request, edit=False)


@csrf_exempt
async def images_edits(request: HttpRequest) -> JsonResponse:
    """OpenAI's `POST /images/edits` (multipart: image or image[], mask), answered when done."""
    return await door(request, edit=True)


@csrf_exempt
async def not_found(request: HttpRequest) -> JsonResponse:
    return error_response(
        404,
        f"Invalid URL ({request.method} {request.path}): the studio's door serves "
        "POST /v1/images/generations and POST /v1/images/edits.",
    )
