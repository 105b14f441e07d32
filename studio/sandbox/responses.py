"""OpenAI's response shapes: the error body, simulated failures, and the request id header."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from django.http import HttpResponse, JsonResponse

from studio.sandbox.params import InvalidRequest

REQUEST_ID_HEADER = "x-request-id"
SERVER_ERROR_MESSAGE = "The server had an error while processing your request."

View = Callable[..., HttpResponse]


def new_request_id() -> str:
    """An OpenAI-style request id (studio.sandbox.middleware puts it on every answer)."""
    return f"req_{uuid.uuid4().hex}"


def error_response(
    status: int,
    message: str,
    *,
    error_type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> JsonResponse:
    body = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    return JsonResponse(body, status=status)


def invalid_request_response(problem: InvalidRequest) -> JsonResponse:
    return error_response(
        400,
        problem.message,
        error_type=problem.error_type,
        param=problem.param,
        code=problem.code,
    )


def missing_api_key_response() -> JsonResponse:
    return error_response(
        401,
        "You didn't provide an API key. You need to provide your API key in an Authorization "
        "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        code="invalid_api_key",
    )


def incorrect_api_key_response() -> JsonResponse:
    return error_response(
        401,
        "Incorrect API key provided. The sandbox takes only the key in its SANDBOX_API_KEY.",
        code="invalid_api_key",
    )


def sandbox_closed_response() -> JsonResponse:
    """Production without SANDBOX_API_KEY: no key opens the sandbox (check --deploy says so)."""
    return error_response(
        401,
        "The sandbox accepts no API key: it runs with DEBUG off and no SANDBOX_API_KEY is "
        "set. Set SANDBOX_API_KEY for the sandbox and its route.",
        code="invalid_api_key",
    )


def refusal_response(request_id: str) -> JsonResponse:
    return error_response(
        400,
        "Your request was rejected by the safety system. If you believe this is an error, "
        f"contact us and include the request ID {request_id}.",
        error_type="image_generation_user_error",
        code="moderation_blocked",
    )


def timeout_response() -> JsonResponse:
    return error_response(504, "Request timed out.", error_type="timeout")


def simulated_error_response(status: int) -> JsonResponse:
    """The body OpenAI sends with this status, as near as a status alone tells."""
    if status == 429:
        response = error_response(
            429,
            "Rate limit reached for gpt-image-2 in organization org-sandbox on images per "
            "minute (IPM): Limit 5, Used 5, Requested 1. Please try again in 1s.",
            error_type="requests",
            code="rate_limit_exceeded",
        )
        response["Retry-After"] = "1"
        return response
    if status == 401:
        return error_response(401, "Incorrect API key provided.", code="invalid_api_key")
    if status == 503:
        return error_response(
            503,
            "The engine is currently overloaded, please try again later.",
            error_type="server_error",
        )
    if status >= 500:
        return error_response(status, SERVER_ERROR_MESSAGE, error_type="server_error")
    return error_response(
        status, f"The sandbox was told to fail this request with status {status}."
    )
