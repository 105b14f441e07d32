"""Read `[sandbox:...]` directives out of a prompt: how a caller tells the sandbox to misbehave.

    [sandbox:latency=2.5]  wait that long before answering
    [sandbox:timeout]      wait the longest allowed, then answer 504
    [sandbox:error=429]    answer with that 4xx or 5xx status and OpenAI's error body
    [sandbox:refuse]       answer 400 moderation_blocked, as the safety system does
    [sandbox:bad-b64]      answer 200 with b64_json that does not decode
    [sandbox:typo]         draw the first quoted label with one letter changed
    [sandbox:pace=0.5]     in a stream, wait that long between image events (default 0.2 s)
    [sandbox:stream-error] in a stream, send one partial image, then an error event, and stop
    [sandbox:ignore-mask]  in an edit, change the whole image as a gateway that drops the mask

All the waiting of one call (latency, timeout and pace together) ends within
SANDBOX_MAX_LATENCY_SECONDS, which sits below the web server's timeout: a slow call answers
instead of being killed. Unknown directives and bad values are ignored; every
`[sandbox:...]` token is stripped from the text that is drawn.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field

from django.conf import settings

DIRECTIVE_PATTERN = re.compile(
    r"\[sandbox:\s*([a-z0-9_-]+)\s*(?:=\s*([^\]]*?)\s*)?\]", flags=re.IGNORECASE
)
DEFAULT_PACE_SECONDS = 0.2
MIN_ERROR_STATUS = 400
MAX_ERROR_STATUS = 599


class WaitBudget:
    """The waiting one sandbox call may still do, in seconds."""

    def __init__(self, seconds: float) -> None:
        self.left = max(0.0, seconds)

    def wait(self, seconds: float) -> None:
        seconds = min(seconds, self.left)
        if seconds > 0:
            time.sleep(seconds)
            self.left -= seconds

    def wait_out(self) -> None:
        self.wait(self.left)


def _call_budget() -> WaitBudget:
    return WaitBudget(float(settings.SANDBOX_MAX_LATENCY_SECONDS))


@dataclass(frozen=True)
class Directives:
    latency_seconds: float = 0.0
    timeout: bool = False
    error_status: int | None = None
    refuse: bool = False
    bad_b64: bool = False
    typo: bool = False
    pace_seconds: float = DEFAULT_PACE_SECONDS
    stream_error: bool = False
    ignore_mask: bool = False
    # One budget per call, shared by every wait the call makes (not part of its value).
    budget: WaitBudget = field(default_factory=_call_budget, compare=False, repr=False)

    @classmethod
    def from_prompt(cls, prompt: str) -> Directives:
        found: dict[str, object] = {}
        for match in DIRECTIVE_PATTERN.finditer(prompt):
            name, value = match.group(1).lower().replace("_", "-"), match.group(2)
            if name == "latency" and (seconds := _read_seconds(value)) is not None:
                found["latency_seconds"] = seconds
            elif name == "error" and (status := _read_error_status(value)) is not None:
                found["error_status"] = status
            elif name in ("timeout", "refuse", "typo") and value is None:
                found[name] = True
            elif name == "pace" and (seconds := _read_seconds(value)) is not None:
                found["pace_seconds"] = seconds
            elif name in ("bad-b64", "stream-error", "ignore-mask") and value is None:
                found[name.replace("-", "_")] = True
        return cls(**found)  # type: ignore[arg-type]


def strip_directives(prompt: str) -> str:
    """The prompt as it would read without any `[sandbox:...]` token."""
    return DIRECTIVE_PATTERN.sub("", prompt).strip()


def _read_seconds(value: str | None) -> float | None:
    try:
        seconds = float(value or "")
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _read_error_status(value: str | None) -> int | None:
    if not value or not value.isdigit():
        return None
    status = int(value)
    return status if MIN_ERROR_STATUS <= status <= MAX_ERROR_STATUS else None
