from __future__ import annotations

import re

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


# C0 control characters but tab, line feed and carriage return, which text areas carry.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
# A header value may hold a tab, never a line break.
HEADER_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0a-\x1f]")


class ControlCharacterMiddleware:
    """Answer 400 to a request whose path, query or form values hold a control character.

    No text the studio keeps or shows has one, and PostgreSQL refuses NUL in any text
    column: checked here once, a stray %00 is a readable 400 instead of a database error in
    whichever view meets it. The sandbox is left alone: it answers bad input itself, in
    OpenAI's error shape.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        # Headers too: django-axes stores the User-Agent of a failed login, for one.
        for key, value in request.META.items():
            header = key.startswith("HTTP_") and isinstance(value, str)
            if header and HEADER_CONTROL_CHARACTERS.search(value):
                name = key.removeprefix("HTTP_").replace("_", "-").title()
                return _control_character_refusal(f"the {name} header")
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        if getattr(view_func, "__module__", "").startswith("studio.sandbox"):
            return None
        if CONTROL_CHARACTERS.search(request.path):
            return _control_character_refusal("the address")
        forms = [request.GET, request.POST] if request.method == "POST" else [request.GET]
        for values in forms:
            for name, items in values.lists():
                if CONTROL_CHARACTERS.search(name):
                    return _control_character_refusal("a field name")
                if any(CONTROL_CHARACTERS.search(value) for value in items):
                    return _control_character_refusal(f"the field “{name[:60]}”")
        if request.method == "POST":
            for name, uploads in request.FILES.lists():
                if any(CONTROL_CHARACTERS.search(upload.name or "") for upload in uploads):
                    return _control_character_refusal(f"the file name in “{name[:60]}”")
        return None


def _control_character_refusal(where: str) -> HttpResponse:
    return HttpResponse(
        f"The request was refused: {where} holds a control character (such as NUL, %00), "
        "which no field of the studio accepts. Remove it and try again.",
        status=400,
        content_type="text/plain; charset=utf-8",
    )
