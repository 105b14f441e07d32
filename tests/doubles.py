"""A scripted image provider on a loopback socket: answers a list of replies in order.

It stands in for a provider gateway whose behaviour a test must control call by call
(429 then 200, always 500, ...). Success replies are real ImagesResponse bodies with a
real PNG, so the studio's whole path runs through the real openai SDK.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image


@dataclass
class Reply:
    status: int = 200
    body: dict | str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    events: list[dict] | None = None  # a server-sent event stream instead of a JSON body


def png_b64(width: int = 1024, height: int = 1024) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (40, 90, 160)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def stream_reply(*events: dict) -> Reply:
    """A 200 stream of these events, each sent as `event: <type>` + `data: <json>`."""
    return Reply(200, None, {}, list(events))


def image_reply(width: int = 1024, height: int = 1024, output_tokens: int = 196) -> Reply:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (40, 90, 160)).save(buffer, "PNG")
    return Reply(
        200,
        {
            "created": 1,
            "data": [{"b64_json": base64.b64encode(buffer.getvalue()).decode()}],
            "usage": {
                "input_tokens": 10,
                "output_tokens": output_tokens,
                "total_tokens": 10 + output_tokens,
                "input_tokens_details": {"text_tokens": 10, "image_tokens": 0},
            },
        },
    )


def error_reply(status: int, code: str | None = None, retry_after: str | None = None) -> Reply:
    body = {"error": {"message": f"scripted {status}", "type": "x", "param": None, "code": code}}
    return Reply(status, body, {"Retry-After": retry_after} if retry_after else {})


class ScriptedProvider:
    """Replies in order; the last reply repeats. Records every request body it got."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.received: list[dict] = []
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    provider.received.append(json.loads(raw or b"{}"))
                except ValueError:
                    provider.received.append({"raw": raw})
                index = min(len(provider.received), len(provider.replies)) - 1
                reply = provider.replies[index]
                if reply.events is not None:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("x-request-id", f"req_double_{uuid.uuid4().hex[:12]}")
                    self.end_headers()
                    for event in reply.events:
                        data = json.dumps(event)
                        self.wfile.write(f"event: {event['type']}\ndata: {data}\n\n".encode())
                        self.wfile.flush()
                    return
                if isinstance(reply.body, str):  # a body sent as it is, JSON or not
                    payload = reply.body.encode()
                else:
                    payload = json.dumps(reply.body if reply.body is not None else {}).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("x-request-id", f"req_double_{uuid.uuid4().hex[:12]}")
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> ScriptedProvider:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
