from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse


class RequestBodyLimitMiddleware:
    """Refuse a request whose declared body is larger than any legitimate one, before a
    byte of it is read. (The web server in front should enforce the same limit.)"""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return HttpResponse("Bad Content-Length.", status=400, content_type="text/plain")
        if length > settings.MAX_REQUEST_BODY_BYTES:
            limit_mb = settings.MAX_REQUEST_BODY_BYTES // (1024 * 1024)
            return HttpResponse(
                f"The request is {length // (1024 * 1024)} MB; the studio accepts at most "
                f"{limit_mb} MB (16 images of up to 50 MB and a mask).",
                status=413,
                content_type="text/plain",
            )
        return self.get_response(request)
