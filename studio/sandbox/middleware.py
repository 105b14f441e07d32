"""Every answer under /sandbox/v1/ carries an `x-request-id`, and every error there is in
OpenAI's error shape, whoever produced it: the URL resolver (404), a method check (405), the
body limit (413), an exception (500) or the sandbox's own checks."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from studio.middleware import BothModes
from studio.sandbox import responses

SANDBOX_PREFIX = "/sandbox"
SANDBOX_ROOT = SANDBOX_PREFIX + "/v1/"
# What OpenAI's error body names for errors the sandbox does not word itself.
CODES = {413: "request_too_large"}


def is_sandbox_path(path: str) -> bool:
    return path.startswith(SANDBOX_ROOT) or path == SANDBOX_ROOT.rstrip("/")


class OpenAIErrorMiddleware(BothModes):
    def before(self, request: HttpRequest) -> None:
        if is_sandbox_path(request.path_info):
            request.sandbox_request_id = responses.new_request_id()

    def after(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if not is_sandbox_path(request.path_info):
            return response
        if response.status_code >= 400 and not is_json(response):
            response = openai_error_for(request, response)
        response[responses.REQUEST_ID_HEADER] = request.sandbox_request_id
        return response


def is_json(response: HttpResponse) -> bool:
    return response.get("Content-Type", "").startswith("application/json")


def openai_error_for(request: HttpRequest, original: HttpResponse) -> HttpResponse:
    """The same status, worded as OpenAI words it; headers that matter (Allow) kept."""
    status = original.status_code
    where = f"{request.method} {request.path_info.removeprefix(SANDBOX_PREFIX)}"
    if status == 404:
        message = f"Invalid URL ({where})"
    elif status == 405:
        allowed = original.get("Allow", "POST")
        message = f"Invalid method for URL ({where}): this endpoint takes {allowed}."
    elif status >= 500:
        message = responses.SERVER_ERROR_MESSAGE
    elif original.get("Content-Type", "").startswith("text/plain") and not original.streaming:
        message = original.content.decode(errors="replace").strip() or f"HTTP {status}."
    else:
        message = f"The request could not be served (HTTP {status})."
    error_type = "server_error" if status >= 500 else "invalid_request_error"
    response = responses.error_response(
        status, message, error_type=error_type, code=CODES.get(status)
    )
    if "Allow" in original:
        response["Allow"] = original["Allow"]
    return response
