"""The studio's REST API under /api/ (django-ninja): OpenAPI at /api/schema, docs at /api/docs.

A studio API token (Settings > API tokens) authenticates every call as its user, with that
user's role: designers submit and read their own requests, reviewers and admins read
everyone's and work the review queue. Submissions go through the composer's and the edit
page's own forms, so every rule, limit and budget is the same as on the pages.

Every error has one shape:
    {"error": {"status": 400, "code": "invalid", "message": "...",
               "fields": [{"field": "size", "rule": "invalid", "message": "..."}]}}
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q
from django.http import Http404, HttpRequest
from django.shortcuts import get_object_or_404
from django.utils.datastructures import MultiValueDict
from ninja import File, Form, NinjaAPI, Router, Schema
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.files import UploadedFile
from ninja.security import HttpBearer
from pydantic import Field

from api.models import ApiToken, TokenRefused
from studio.forms import CUSTOM_SIZE, SLOT_PREFIX, SOURCE_SIZE, ComposerForm, EditForm
from studio.middleware import CONTROL_CHARACTERS
from studio.models import (
    BudgetExceeded,
    GenerationRequest,
    OutputImage,
    Route,
    Status,
    SubmissionFlood,
)
from studio.pricing import money
from studio.views import DESIGNER_ROLES, has_role, private_file_response

PAGE_SIZE, MAX_PAGE_SIZE = 20, 100


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, fields: list | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields or []


class TokenAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str):
        try:
            found = ApiToken.authenticate(token)
        except TokenRefused as refusal:
            raise ApiError(401, "invalid_token", refusal.message) from None
        request.user = found.user
        return found.user

    def __call__(self, request: HttpRequest):
        if not request.headers.get("Authorization", "").lower().startswith("bearer "):
            raise ApiError(
                401,
                "invalid_token",
                "Send a studio API token as 'Authorization: Bearer sts_...'; make one under "
                "Settings > API tokens.",
            )
        return super().__call__(request)


api = NinjaAPI(
    title="gpt-image-2 studio API",
    version="1",
    description=__doc__,
    auth=TokenAuth(),
    urls_namespace="rest",
    docs_url="/docs",
    openapi_url="/schema",
)


def error_body(status: int, code: str, message: str, fields: list | None = None) -> dict:
    return {"error": {"status": status, "code": code, "message": message, "fields": fields or []}}


def error_response(request, status: int, code: str, message: str, fields=None, headers=None):
    response = api.create_response(
        request, error_body(status, code, message, fields), status=status
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


@api.exception_handler(ApiError)
def _api_error(request, error: ApiError):
    headers = {"Retry-After": "60"} if error.status == 429 else None
    return error_response(request, error.status, error.code, error.message, error.fields, headers)


@api.exception_handler(NinjaValidationError)
def _validation_error(request, error: NinjaValidationError):
    fields = []
    for item in error.errors:
        location = [
            str(part)
            for part in item.get("loc", ())
            if part not in ("body", "query", "form", "path")
        ]
        fields.append(
            {
                "field": ".".join(location) or None,
                "rule": item.get("type", "invalid"),
                "message": item.get("msg", "Invalid value."),
            }
        )
    return error_response(request, 400, "invalid", "The request has invalid fields.", fields)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request, error):
    return error_response(request, 401, "invalid_token", "A valid studio API token is required.")


@api.exception_handler(Http404)
def _not_found(request, error):
    return error_response(request, 404, "not_found", str(error) or "Not found.")


@api.exception_handler(PermissionDenied)
def _forbidden(request, error):
    return error_response(request, 403, "forbidden", str(error) or "Your role does not allow it.")


@api.exception_handler(HttpError)
def _http_error(request, error: HttpError):
    return error_response(request, error.status_code, "error", str(error))


def require_role(request, *roles: str) -> None:
    if not has_role(request.auth, *roles):
        raise ApiError(
            403,
            "forbidden",
            f"This needs the {' or '.join(roles)} role; {request.auth.get_username()} has "
            "none of them.",
        )


# --- Schemas ------------------------------------------------------------------------------


class ErrorField(Schema):
    field: str | None
    rule: str
    message: str


class ErrorDetail(Schema):
    status: int
    code: str
    message: str
    fields: list[ErrorField]


class ErrorOut(Schema):
    error: ErrorDetail


ERRORS = {400: ErrorOut, 401: ErrorOut, 402: ErrorOut, 403: ErrorOut, 404: ErrorOut, 429: ErrorOut}


class Strict(Schema):
    """A body that names an unknown field instead of ignoring it."""

    model_config = {"extra": "forbid"}


class GenerateIn(Strict):
    prompt: str = Field("", description="A free prompt; or leave empty and choose a frame.")
    frame: str | None = Field(None, description="A prompt frame by key; fill its slots.")
    slots: dict[str, str] = Field(default_factory=dict, description="Slot name -> value.")
    route: str | None = Field(None, description="A route by name; default: the composer's.")
    size: str = Field("1024x1024", description="WIDTHxHEIGHT, by the studio's size rules.")
    quality: str = "low"
    output_format: str = "png"
    output_compression: int | None = None
    background: str = "auto"
    n: int = 1
    partial_images: int = 0
    expected_text: list[str] = Field(
        default_factory=list, description="Text the image must show besides quoted text."
    )


class AttemptOut(Schema):
    number: int
    route: str
    route_owner: str
    model_requested: str
    model_sent: str
    outcome: str
    billing: str
    http_status: int | None
    provider_request_id: str
    retry_reason: str
    error_message: str
    latency_ms: int | None
    input_tokens: int
    output_tokens: int
    cost: Decimal | None
    started_at: datetime
    finished_at: datetime | None


class DecisionOut(Schema):
    verdict: str
    reviewer: str
    reason: str
    override_reason: str
    created_at: datetime


class OutputOut(Schema):
    id: UUID
    index: int
    kind: str
    width: int
    height: int
    format: str
    bytes: int
    sha256: str
    file_url: str
    review_status: str
    text_mismatch: bool
    drift_percent: float | None
    deleted: bool
    decisions: list[DecisionOut]


class RequestSummary(Schema):
    id: UUID
    created_at: datetime
    created_by: str
    operation: str
    status: str
    prompt: str
    size: str
    quality: str
    output_format: str
    n: int
    route: str
    requested_model: str
    provider_model: str
    estimated_cost: Decimal | None
    cost: Decimal | None
    cost_shown: str
    url: str


class RequestOut(RequestSummary):
    background: str
    output_compression: int | None
    partial_images: int
    expected_text_labels: list[str]
    failure_reason: str
    failure_message: str
    exposure: Decimal | None
    parent_output: UUID | None
    started_at: datetime | None
    finished_at: datetime | None
    attempts: list[AttemptOut]
    outputs: list[OutputOut]


class RequestPage(Schema):
    items: list[RequestSummary]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null: end.")


class DecisionIn(Strict):
    verdict: str = Field(description="approved, rejected or changes_requested")
    reason: str = ""
    override_reason: str = ""


class QueueItem(Schema):
    output: OutputOut
    request: RequestSummary


class QueuePage(Schema):
    items: list[QueueItem]
    next_cursor: str | None


# --- Serializing --------------------------------------------------------------------------


def summary(generation: GenerationRequest) -> dict:
    return {
        "id": generation.id,
        "created_at": generation.created_at,
        "created_by": generation.created_by.get_username(),
        "operation": generation.operation,
        "status": generation.status,
        "prompt": generation.prompt,
        "size": generation.size,
        "quality": generation.quality,
        "output_format": generation.output_format,
        "n": generation.n,
        "route": generation.route.name,
        "requested_model": generation.requested_model,
        "provider_model": generation.provider_model,
        "estimated_cost": generation.estimated_cost,
        "cost": generation.cost,
        "cost_shown": money(generation.cost),
        "url": generation.get_absolute_url(),
    }


def output_out(output: OutputImage) -> dict:
    return {
        "id": output.id,
        "index": output.index,
        "kind": output.kind,
        "width": output.width,
        "height": output.height,
        "format": output.format,
        "bytes": output.bytes,
        "sha256": output.sha256,
        "file_url": f"/api/outputs/{output.id}/file",
        "review_status": output.review_status,
        "text_mismatch": output.text_mismatch,
        "drift_percent": output.drift_percent,
        "deleted": output.deleted_at is not None,
        "decisions": [
            {
                "verdict": decision.verdict,
                "reviewer": decision.reviewer.get_username(),
                "reason": decision.reason,
                "override_reason": decision.override_reason,
                "created_at": decision.created_at,
            }
            for decision in output.decisions.select_related("reviewer")
        ],
    }


def detail(generation: GenerationRequest) -> dict:
    attempts = [
        {
            "number": a.number,
            "route": a.route.name,
            "route_owner": a.route_owner,
            "model_requested": a.model_requested,
            "model_sent": a.model_sent,
            "outcome": a.outcome,
            "billing": a.billing_label,
            "http_status": a.http_status,
            "provider_request_id": a.provider_request_id,
            "retry_reason": a.retry_reason,
            "error_message": a.error_message,
            "latency_ms": a.latency_ms,
            "input_tokens": a.input_text_tokens + a.input_image_tokens,
            "output_tokens": a.output_image_tokens + a.output_text_tokens,
            "cost": a.cost,
            "started_at": a.started_at,
            "finished_at": a.finished_at,
        }
        for a in generation.attempts.select_related("route").order_by("number")
    ]
    outputs = generation.outputs.order_by("kind", "index")
    return {
        **summary(generation),
        "background": generation.background,
        "output_compression": generation.output_compression,
        "partial_images": generation.partial_images,
        "expected_text_labels": generation.expected_text_labels,
        "failure_reason": generation.failure_reason,
        "failure_message": generation.failure_message,
        "exposure": generation.exposure,
        "parent_output": generation.parent_output_id,
        "started_at": generation.started_at,
        "finished_at": generation.finished_at,
        "attempts": attempts,
        "outputs": [output_out(output) for output in outputs],
    }


# --- Cursor pagination --------------------------------------------------------------------


def encode_cursor(created_at: datetime, pk) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{pk}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor.encode("ascii")).decode()
        stamp, pk = raw.split("|", 1)
        return datetime.fromisoformat(stamp), pk
    except (ValueError, UnicodeError, binascii.Error):
        raise ApiError(
            400,
            "invalid",
            "The cursor is not one this API gave out.",
            [{"field": "cursor", "rule": "invalid", "message": "Use next_cursor as given."}],
        ) from None


def page(queryset, cursor: str | None, limit: int, newest_first: bool = True):
    """One page of `queryset` ordered by (created_at, id), after the cursor's row."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ApiError(
            400,
            "invalid",
            f"limit must be 1 to {MAX_PAGE_SIZE}.",
            [{"field": "limit", "rule": "range", "message": f"1 to {MAX_PAGE_SIZE}."}],
        )
    order = ("-created_at", "-pk") if newest_first else ("created_at", "pk")
    queryset = queryset.order_by(*order)
    if cursor:
        stamp, pk = decode_cursor(cursor)
        if newest_first:
            after = Q(created_at__lt=stamp) | Q(created_at=stamp, pk__lt=pk)
        else:
            after = Q(created_at__gt=stamp) | Q(created_at=stamp, pk__gt=pk)
        try:
            rows = list(queryset.filter(after)[: limit + 1])
        except ValidationError:
            raise ApiError(400, "invalid", "The cursor is not one this API gave out.") from None
    else:
        rows = list(queryset[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1].created_at, rows[-1].pk) if more else None
    return rows, next_cursor


# --- Submitting through the forms ----------------------------------------------------------


def form_error(form) -> ApiError:
    fields = [
        {
            "field": None if name == "__all__" else name,
            "rule": error.code or "invalid",
            "message": " ".join(error.messages),
        }
        for name, errors in form.errors.as_data().items()
        for error in errors
    ]
    message = "; ".join(f"{f['field'] or 'request'}: {f['message']}" for f in fields)
    return ApiError(400, "invalid", message, fields)


def check_text(values: dict) -> None:
    for name, value in values.items():
        if isinstance(value, str) and CONTROL_CHARACTERS.search(value):
            raise ApiError(
                400,
                "invalid",
                f"{name} holds a control character.",
                [
                    {
                        "field": name,
                        "rule": "control_character",
                        "message": "Remove control characters such as NUL.",
                    }
                ],
            )


def composer_data(values: dict, edit: bool) -> dict:
    """The API's fields as the composer's form fields (one set of rules for both)."""
    routes = Route.objects.filter(enabled=True)
    if values.get("route"):
        route = routes.filter(name=values["route"]).first()
        if route is None:
            raise ApiError(
                400,
                "invalid",
                f"No enabled route named {values['route'][:100]!r}.",
                [{"field": "route", "rule": "unknown", "message": "No such route."}],
            )
    else:
        route = next((r for r in routes if r.is_sandbox), None) or routes.first()
    data = {
        "prompt": values.get("prompt") or "",
        "route": route.pk if route else "",
        "quality": values.get("quality"),
        "output_format": values.get("output_format"),
        "background": values.get("background"),
        "n": values.get("n"),
        "partial_images": values.get("partial_images"),
        "extra_labels": "\n".join(values.get("expected_text") or []),
    }
    if values.get("output_compression") is not None:
        data["output_compression"] = values["output_compression"]
    size = values.get("size") or ""
    if size in ("source", "auto") and edit:
        data["size"] = SOURCE_SIZE
    elif size in dict(ComposerForm.base_fields["size"].choices) and size != CUSTOM_SIZE:
        data["size"] = size
    else:
        width, _, height = size.partition("x")
        data.update(size=CUSTOM_SIZE, width=width, height=height)
    if values.get("frame"):
        frames = EditForm.frames() if edit else ComposerForm.frames()
        frame = frames.filter(key=values["frame"]).first()
        if frame is None:
            raise ApiError(
                400,
                "invalid",
                f"No active frame {values['frame'][:100]!r}.",
                [{"field": "frame", "rule": "unknown", "message": "No such frame."}],
            )
        data["frame"] = frame.pk
        data.update({SLOT_PREFIX + k: v for k, v in (values.get("slots") or {}).items()})
    return data


def submit_form(form, user) -> GenerationRequest:
    if not form.is_valid():
        raise form_error(form)
    try:
        return form.submit(user)
    except SubmissionFlood as flood:
        raise ApiError(429, "rate_limited", str(flood)) from None
    except BudgetExceeded as refusal:
        raise ApiError(402, "budget_exceeded", str(refusal)) from None


# --- Requests -----------------------------------------------------------------------------

requests_router = Router(tags=["requests"])


def visible_requests(user):
    return GenerationRequest.objects.visible_to(user).select_related("route", "created_by")


@requests_router.post("/generate", response={201: RequestOut, **ERRORS})
def generate(request, body: GenerateIn):
    """Submit a generation, checked by the composer's rules; 201 with the queued request."""
    require_role(request, *DESIGNER_ROLES)
    values = body.dict()
    check_text(
        {**values, **values["slots"], **{str(i): t for i, t in enumerate(values["expected_text"])}}
    )
    form = ComposerForm(composer_data(values, edit=False))
    return 201, detail(submit_form(form, request.auth))


@requests_router.post("/edit", response={201: RequestOut, **ERRORS})
def edit(
    request,
    prompt: Form[str] = "",
    source: File[UploadedFile] = None,
    source_output: Form[UUID | None] = None,
    references: File[list[UploadedFile]] = None,
    mask: File[UploadedFile] = None,
    frame: Form[str | None] = None,
    route: Form[str | None] = None,
    size: Form[str] = "source",
    quality: Form[str] = "low",
    output_format: Form[str] = "png",
    output_compression: Form[int | None] = None,
    background: Form[str] = "auto",
    n: Form[int] = 1,
    expected_text: Form[str] = "",
):
    """Submit an edit (multipart): a source image (upload, or `source_output`, an output's
    id), up to 15 references and an optional mask, checked by the edit page's rules."""
    require_role(request, *DESIGNER_ROLES)
    values = {
        "prompt": prompt,
        "frame": frame,
        "route": route,
        "size": size,
        "quality": quality,
        "output_format": output_format,
        "output_compression": output_compression,
        "background": background,
        "n": n,
        "partial_images": 0,
        "expected_text": [line for line in expected_text.splitlines() if line.strip()],
    }
    check_text({k: v for k, v in values.items() if isinstance(v, str)})
    data = composer_data(values, edit=True)
    if source_output is not None:
        data["source_output"] = str(source_output)
    files = {"source": source, "mask": mask}
    uploads = MultiValueDict({k: [v] for k, v in files.items() if v is not None})
    if references:
        uploads.setlist("references", list(references))
    form = EditForm(data, uploads, user=request.auth)
    return 201, detail(submit_form(form, request.auth))


@requests_router.api_operation(["GET", "HEAD"], "/", response={200: RequestPage, **ERRORS})
def list_requests(
    request,
    cursor: str | None = None,
    limit: int = PAGE_SIZE,
    status: str | None = None,
    operation: str | None = None,
    mine: bool = False,
):
    """Requests you may see, newest first: a designer's own, everyone's for reviewers and
    admins (`mine=true` for your own only). Filter by status or operation."""
    queryset = visible_requests(request.auth)
    if mine:
        queryset = queryset.filter(created_by=request.auth)
    if status:
        if status not in Status.values:
            raise ApiError(
                400,
                "invalid",
                f"status is one of {', '.join(Status.values)}.",
                [{"field": "status", "rule": "choice", "message": "Unknown status."}],
            )
        queryset = queryset.filter(status=status)
    if operation:
        if operation not in GenerationRequest.Operation.values:
            raise ApiError(
                400,
                "invalid",
                "Unknown operation.",
                [
                    {
                        "field": "operation",
                        "rule": "choice",
                        "message": ", ".join(GenerationRequest.Operation.values),
                    }
                ],
            )
        queryset = queryset.filter(operation=operation)
    rows, next_cursor = page(queryset, cursor, limit)
    return {"items": [summary(row) for row in rows], "next_cursor": next_cursor}


@requests_router.api_operation(
    ["GET", "HEAD"], "/{request_id}", response={200: RequestOut, **ERRORS}
)
def read_request(request, request_id: UUID):
    """A request with its attempts (billing state each), outputs and their review."""
    generation = get_object_or_404(visible_requests(request.auth), pk=request_id)
    return detail(generation)


@requests_router.post("/{request_id}/cancel", response={200: RequestOut, **ERRORS})
def cancel_request(request, request_id: UUID):
    """Cancel your request (admins: anyone's). A call already out still finishes and bills."""
    require_role(request, *DESIGNER_ROLES)
    generation = get_object_or_404(visible_requests(request.auth), pk=request_id)
    if generation.created_by_id != request.auth.pk and not has_role(request.auth, "admin"):
        raise ApiError(403, "forbidden", "Only its designer or an admin cancels a request.")
    generation.cancel(request.auth)
    generation.refresh_from_db()
    return detail(generation)


api.add_router("/requests", requests_router)

# --- Files --------------------------------------------------------------------------------

files_router = Router(tags=["files"])


@files_router.api_operation(["GET", "HEAD"], "/{output_id}/file", response={200: bytes, **ERRORS})
def output_file(request, output_id: UUID):
    """An output's image file (PNG, JPEG or WebP), as the studio stored it."""
    visible = GenerationRequest.objects.visible_to(request.auth)
    output = get_object_or_404(OutputImage.objects.filter(request__in=visible), pk=output_id)
    try:
        handle = output.file.open("rb")
    except (FileNotFoundError, ValueError):
        raise Http404("The stored file is gone (retention deletes files after a while).") from None
    return private_file_response(handle, output.content_type, output.file.name)


api.add_router("/outputs", files_router)

# --- Review -------------------------------------------------------------------------------

review_router = Router(tags=["review"])


@review_router.api_operation(["GET", "HEAD"], "/queue", response={200: QueuePage, **ERRORS})
def review_queue(request, cursor: str | None = None, limit: int = PAGE_SIZE):
    """Outputs awaiting review, oldest first (reviewers and admins)."""
    from review.models import awaiting_review

    require_role(request, "reviewer", "admin")
    rows, next_cursor = page(awaiting_review(), cursor, limit, newest_first=False)
    return {
        "items": [{"output": output_out(o), "request": summary(o.request)} for o in rows],
        "next_cursor": next_cursor,
    }


@review_router.post("/outputs/{output_id}/decisions", response={201: OutputOut, **ERRORS})
def record_decision(request, output_id: UUID, body: DecisionIn):
    """Approve, reject or request changes, by the review page's rules (four eyes, every
    expected label inspected, an override reason over a text mismatch)."""
    from review.models import Decision, decide

    require_role(request, "reviewer", "admin")
    output = get_object_or_404(
        OutputImage.objects.filter(kind=OutputImage.Kind.FINAL).select_related("request"),
        pk=output_id,
    )
    if body.verdict not in Decision.Verdict.values:
        raise ApiError(
            400,
            "invalid",
            "Unknown verdict.",
            [{"field": "verdict", "rule": "choice", "message": ", ".join(Decision.Verdict.values)}],
        )
    check_text(body.dict())
    try:
        decide(
            output, request.auth, body.verdict, body.reason, override_reason=body.override_reason
        )
    except ValidationError as refusal:
        fields = (
            [
                {
                    "field": name if name != "__all__" else None,
                    "rule": "review_rule",
                    "message": " ".join(messages),
                }
                for name, messages in refusal.message_dict.items()
            ]
            if hasattr(refusal, "error_dict")
            else [{"field": None, "rule": "review_rule", "message": " ".join(refusal.messages)}]
        )
        raise ApiError(400, "invalid", "; ".join(f["message"] for f in fields), fields) from None
    except PermissionDenied as refusal:
        raise ApiError(403, "forbidden", str(refusal)) from None
    output.refresh_from_db()
    return 201, output_out(output)


api.add_router("/review", review_router)
