from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from studio.sandbox import generations, responses
from studio.sandbox.directives import Directives
from studio.sandbox.params import InvalidRequest, read_image_request


def has_bearer_token(request: HttpRequest) -> bool:
    """Any non-empty bearer token will do: the sandbox checks the header, not the key."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


@csrf_exempt
@responses.with_request_id
@require_POST
def images_generations(request: HttpRequest) -> JsonResponse:
    if not has_bearer_token(request):
        return responses.missing_api_key_response()
    try:
        image_request = read_image_request(request.body)
    except InvalidRequest as problem:
        return responses.invalid_request_response(problem)
    directives = Directives.from_prompt(image_request.prompt)
    failure = generations.misbehaviour_response(directives, request.sandbox_request_id)
    if failure is not None:
        return failure
    return JsonResponse(generations.images_response(image_request, directives))
