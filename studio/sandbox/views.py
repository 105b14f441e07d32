from __future__ import annotations

import functools
import secrets

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from studio.sandbox import assistant, batches, edits, generations, responses
from studio.sandbox.directives import Directives
from studio.sandbox.models import SandboxBatch, SandboxFile
from studio.sandbox.params import InvalidRequest, read_image_request, read_json_object


def key_problem(request: HttpRequest) -> HttpResponse | None:
    """A 401 unless the request carries the bearer key the sandbox takes: SANDBOX_API_KEY
    when set; in development, when it is not, any non-empty one; in production none at all."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    expected = settings.SANDBOX_API_KEY
    if not expected and settings.SANDBOX_KEY_REQUIRED:
        return responses.sandbox_closed_response()
    if scheme.lower() != "bearer" or not token:
        return responses.missing_api_key_response()
    # Bytes: compare_digest refuses str with non-ASCII characters, which a header may hold.
    if expected and not secrets.compare_digest(token.encode(), expected.encode()):
        return responses.incorrect_api_key_response()
    return None


def sandbox_endpoint(view: responses.View) -> responses.View:
    """POST only, a bearer key, and 400s for bad requests. (The request id and the error
    shape of anything else are studio.sandbox.middleware's.)"""

    @functools.wraps(view)
    def checked(request: HttpRequest) -> HttpResponse:
        refusal = key_problem(request)
        if refusal is not None:
            return refusal
        try:
            return view(request)
        except InvalidRequest as problem:
            return responses.invalid_request_response(problem)

    return csrf_exempt(require_POST(checked))


@sandbox_endpoint
def images_generations(request: HttpRequest) -> HttpResponse:
    image_request = read_image_request(request.body)
    directives = Directives.from_prompt(image_request.prompt)
    failure = generations.misbehaviour_response(directives, request.sandbox_request_id)
    if failure is not None:
        return failure
    draw = generations.draw_generation(image_request, directives)
    return generations.answer(image_request, directives, draw)


@sandbox_endpoint
def images_edits(request: HttpRequest) -> HttpResponse:
    edit_request = edits.read_edit_request(request)
    directives = Directives.from_prompt(edit_request.image.prompt)
    failure = generations.misbehaviour_response(directives, request.sandbox_request_id)
    if failure is not None:
        return failure
    draw = edits.draw_edits(edit_request.image, edit_request.inputs, edit_request.mask, directives)
    return generations.answer(
        edit_request.image,
        directives,
        draw,
        events=generations.EDIT_EVENTS,
        input_image_tokens=edit_request.input_image_tokens,
    )


@sandbox_endpoint
def responses_create(request: HttpRequest) -> HttpResponse:
    assistant_request = assistant.read_response_request(request)
    directives = Directives.from_prompt(assistant_request.directive_text)
    failure = generations.misbehaviour_response(directives, request.sandbox_request_id)
    if failure is not None:
        return failure
    return assistant.answer(assistant_request, directives)


def sandbox_api(*methods: str):
    """The Files and Batch endpoints: these methods, a bearer key, 400s for bad requests."""

    def decorator(view):
        @functools.wraps(view)
        def checked(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            refusal = key_problem(request)
            if refusal is not None:
                return refusal
            try:
                return view(request, *args, **kwargs)
            except InvalidRequest as problem:
                return responses.invalid_request_response(problem)

        return csrf_exempt(require_http_methods(list(methods))(checked))

    return decorator


def _not_found(kind: str, object_id: str) -> HttpResponse:
    return responses.error_response(404, f"No such {kind}: '{object_id[:64]}'", param="id")


@sandbox_api("POST")
def files_create(request: HttpRequest) -> HttpResponse:
    upload = request.FILES.get("file")
    purpose = request.POST.get("purpose", "")
    if upload is None:
        raise InvalidRequest("Missing required parameter: 'file'.", param="file", code=None)
    if purpose not in ("batch", "user_data", "vision"):
        raise InvalidRequest(
            f"Invalid value for 'purpose': {purpose[:40]!r}.", param="purpose", code=None
        )
    if upload.size > batches.MAX_FILE_BYTES:
        raise InvalidRequest("The file is too large.", param="file", code="file_too_large")
    stored = batches.store_file(upload.name or "upload", purpose, upload.read())
    return JsonResponse(batches.file_object(stored))


@sandbox_api("GET", "HEAD")
def files_retrieve(request: HttpRequest, file_id: str) -> HttpResponse:
    stored = SandboxFile.objects.filter(pk=file_id).first()
    if stored is None:
        return _not_found("file", file_id)
    return JsonResponse(batches.file_object(stored))


@sandbox_api("GET", "HEAD")
def files_content(request: HttpRequest, file_id: str) -> HttpResponse:
    stored = SandboxFile.objects.filter(pk=file_id).first()
    if stored is None:
        return _not_found("file", file_id)
    return HttpResponse(bytes(stored.content), content_type="application/octet-stream")


@sandbox_api("GET", "HEAD", "POST")
def batches_collection(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        return JsonResponse(
            batches.batch_object(batches.create_batch(read_json_object(request.body)))
        )
    rows = SandboxBatch.objects.order_by("-created_at", "-id")
    if after := request.GET.get("after"):
        anchor = SandboxBatch.objects.filter(pk=after).first()
        if anchor is not None:
            rows = rows.filter(created_at__lte=anchor.created_at).exclude(pk=anchor.pk)
    raw_limit = request.GET.get("limit", "20")
    limit = int(raw_limit) if raw_limit.isascii() and raw_limit.isdigit() else 20
    limit = max(1, min(limit, 100))
    page = list(rows[: limit + 1])
    data = [batches.batch_object(batch) for batch in page[:limit]]
    return JsonResponse(
        {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": len(page) > limit,
        }
    )


@sandbox_api("GET", "HEAD")
def batches_retrieve(request: HttpRequest, batch_id: str) -> HttpResponse:
    batch = SandboxBatch.objects.filter(pk=batch_id).first()
    if batch is None:
        return _not_found("batch", batch_id)
    return JsonResponse(batches.batch_object(batches.advance(batch)))


@sandbox_api("POST")
def batches_cancel(request: HttpRequest, batch_id: str) -> HttpResponse:
    batch = SandboxBatch.objects.filter(pk=batch_id).first()
    if batch is None:
        return _not_found("batch", batch_id)
    return JsonResponse(batches.batch_object(batches.cancel(batch)))
