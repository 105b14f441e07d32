from __future__ import annotations

import functools
import secrets

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from studio.sandbox import assistant, edits, generations, responses
from studio.sandbox.directives import Directives
from studio.sandbox.params import InvalidRequest, read_image_request


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
