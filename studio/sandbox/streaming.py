"""Server-sent events as OpenAI sends them: `event: <type>` and `data: <json>` per event."""

from __future__ import annotations

import json
from collections.abc import Iterator

from django.http import StreamingHttpResponse

from studio.sandbox.directives import Directives
from studio.sandbox.responses import SERVER_ERROR_MESSAGE


def sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def event_stream_response(events: Iterator[bytes]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(events, content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies must pass each event on as it comes
    return response


def stream_error_data(
    message: str = SERVER_ERROR_MESSAGE,
    *,
    error_type: str = "server_error",
    code: str | None = "server_error",
    param: str | None = None,
) -> dict:
    """The data of an `event: error` in an Image API stream.

    The spec's ErrorEvent carries an Error object ({type, message, param, code}) as data; the
    SDK raises openai.APIError only when the data has an "error" object. Both are sent, so
    the event matches the spec and the SDK fails the iteration as it would against OpenAI.
    """
    error = {"type": error_type, "code": code, "message": message, "param": param}
    return {**error, "type": "error", "error": error}


class Pacer:
    """Waits the directive's pace between events, out of the call's one wait budget."""

    def __init__(self, directives: Directives) -> None:
        self.directives = directives
        self.started = False

    def wait(self) -> None:
        if self.started and self.directives.pace_seconds:
            self.directives.budget.wait(self.directives.pace_seconds)
        self.started = True
