"""The door waits without a thread: under ASGI no middleware forces Django to run the chain
in a thread per request, and the watcher answers many waiting calls with one query a tick."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging

import pytest
from django.core.handlers.asgi import ASGIHandler

from api import waiting
from studio.models import GenerationRequest, Status


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record) -> None:
        self.messages.append(record.getMessage())


class SyncOnly:
    """A middleware as most are written: sync only (the control case)."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)


def adaptations(settings, middleware: list[str]) -> list[str]:
    """What Django logs (with DEBUG on) about wrapping middleware to fit an async chain."""
    settings.DEBUG = True
    settings.MIDDLEWARE = middleware
    logger, collect = logging.getLogger("django.request"), Collect()
    level = logger.level
    logger.addHandler(collect)
    logger.setLevel(logging.DEBUG)
    try:
        ASGIHandler()
    finally:
        logger.removeHandler(collect)
        logger.setLevel(level)
    return [message for message in collect.messages if "adapted for middleware" in message]


def test_no_middleware_makes_the_asgi_chain_sync(settings):
    studio_middleware = list(settings.MIDDLEWARE)
    control = adaptations(settings, [*studio_middleware, f"{__name__}.SyncOnly"])
    assert control == [f"Asynchronous handler adapted for middleware {__name__}.SyncOnly."]
    assert adaptations(settings, studio_middleware) == []


@pytest.mark.django_db(transaction=True)
def test_many_waiting_calls_share_one_query_a_tick(objects, settings, monkeypatch):
    settings.OPENAI_DOOR_POLL_SECONDS = 0.05
    asked = []
    ended_among = waiting._ended_among
    monkeypatch.setattr(waiting, "_ended_among", lambda ids: asked.append(ids) or ended_among(ids))
    generation = GenerationRequest.objects.get(pk=objects["request_id"])
    GenerationRequest.objects.filter(pk=generation.pk).update(status=Status.RUNNING)

    async def scenario():
        waiters = [
            asyncio.ensure_future(waiting.wait_for_end(generation.pk, 5)) for _ in range(200)
        ]
        late = asyncio.ensure_future(waiting.wait_for_end(generation.pk, 0.1))
        await asyncio.sleep(0.3)
        assert not any(w.done() for w in waiters)
        assert await late is False  # timed out, and left the watcher
        await asyncio.to_thread(
            GenerationRequest.objects.filter(pk=generation.pk).update, status=Status.SUCCEEDED
        )
        return await asyncio.gather(*waiters)

    # In a thread of its own: the browser tests' Playwright keeps an event loop running in
    # this one when they ran earlier in the session.
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        results = thread.submit(asyncio.run, scenario()).result()
    assert results == [True] * 200
    # One question a tick for all 200 (about 0.3 s / 0.05 s ticks), each naming the one id.
    assert 3 <= len(asked) <= 30 and all(ids == [str(generation.pk)] for ids in asked)
