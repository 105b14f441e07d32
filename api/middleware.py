"""Errors under /api/ and /v1/ in each API's own JSON shape, whoever answered them.

The studio's middleware refuses some requests before any view runs (a control character in
the address or a field, a body over the limit) with a plain-text 400 or 413, and Django
answers unknown URLs and methods itself. Under /api/ this wraps such an answer in the REST
API's error shape, under /v1/ in OpenAI's, keeping the status and the message."""

from __future__ import annotations

from django.http import JsonResponse

from studio.middleware import BothModes

REST_PREFIX, DOOR_PREFIX = "/api/", "/v1/"
SERVER_ERROR = "The studio had an error while processing the request."


class ApiErrorShapeMiddleware(BothModes):
    def after(self, request, response):
        path = request.path_info
        if not path.startswith((REST_PREFIX, DOOR_PREFIX)) or response.status_code < 400:
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        status = response.status_code
        if status >= 500:
            message = SERVER_ERROR
        elif response.get("Content-Type", "").startswith("text/plain") and not getattr(
            response, "streaming", False
        ):
            message = response.content.decode(errors="replace").strip() or f"HTTP {status}."
        else:
            message = f"The request could not be served (HTTP {status})."
        if path.startswith(REST_PREFIX):
            rule = "control_character" if "control character" in message else "refused"
            body = {
                "error": {
                    "status": status,
                    "code": "invalid" if status == 400 else "refused",
                    "message": message,
                    "fields": [{"field": None, "rule": rule, "message": message}],
                }
            }
        else:
            error_type = "server_error" if status >= 500 else "invalid_request_error"
            body = {"error": {"message": message, "type": error_type, "param": None, "code": None}}
        shaped = JsonResponse(body, status=status)
        for header in ("Allow", "Retry-After"):
            if header in response:
                shaped[header] = response[header]
        return shaped
