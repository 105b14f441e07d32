from __future__ import annotations

import re

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpResponse


class BothModes:
    """A middleware that runs in a sync chain (WSGI) and an async one (ASGI) alike.

    Its own work is `before` (an answer, or None to go on) and `after`: quick checks with no
    I/O, run in place in either mode. Under ASGI the views behind it then stay async, so a
    call waiting at the OpenAI door (api/door.py) holds no thread; one sync-only middleware
    would make Django run the whole chain in a thread per request.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.async_mode:
            return self.__acall__(request)
        response = self.before(request)
        return self.after(request, response or self.get_response(request))

    async def __acall__(self, request):
        response = self.before(request)
        return self.after(request, response or await self.get_response(request))

    def before(self, request):
        return None

    def after(self, request, response):
        return response


class RequestBodyLimitMiddleware(BothModes):
    """Refuse a request whose declared body is larger than any legitimate one, before a
    byte of it is read. (The web server in front should enforce the same limit.)"""

    def before(self, request):
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
        return None


# C0 control characters but tab, line feed and carriage return, which text areas carry;
# DEL and the C1 controls (U+0080-U+009F: NEL, CSI, ...), which no one types.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# A header value may hold a tab, never a line break.
HEADER_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0a-\x1f]")


class ControlCharacterMiddleware(BothModes):
    """Answer 400 to a request whose path, query or form values hold a control character.

    No text the studio keeps or shows has one, and PostgreSQL refuses NUL in any text
    column: checked here once, a stray %00 is a readable 400 instead of a database error in
    whichever view meets it. The sandbox is left alone: it answers bad input itself, in
    OpenAI's error shape.
    """

    def before(self, request):
        # Headers too: django-axes stores the User-Agent of a failed login, for one.
        for key, value in request.META.items():
            header = key.startswith("HTTP_") and isinstance(value, str)
            if header and HEADER_CONTROL_CHARACTERS.search(value):
                name = key.removeprefix("HTTP_").replace("_", "-").title()
                return _control_character_refusal(f"the {name} header")
        return None

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


class StaticFilesMiddleware(BothModes):
    """WhiteNoise's static files, in either mode (WhiteNoise's own middleware is sync-only)."""

    def __init__(self, get_response) -> None:
        from whitenoise.middleware import WhiteNoiseMiddleware

        super().__init__(get_response)
        self.whitenoise = WhiteNoiseMiddleware(get_response)

    def before(self, request):
        whitenoise = self.whitenoise
        if whitenoise.autorefresh:
            static_file = whitenoise.find_file(request.path_info)
        else:
            static_file = whitenoise.files.get(request.path_info)
        return whitenoise.serve(static_file, request) if static_file is not None else None
