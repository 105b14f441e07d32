"""Wait for requests to end without holding a thread per waiting client.

Each event loop keeps one watcher: every waiting client is a future, and one task asks the
database, every POLL_SECONDS, which of all the awaited requests have ended (one query for
any number of clients), then wakes their futures. The query runs in the loop's default
thread pool; nothing else blocks.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from functools import wraps

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, connection

from studio.models import TERMINAL_STATUSES, GenerationRequest

log = logging.getLogger(__name__)
CHUNK = 1000


def _ended_among(ids: list[str]) -> set[str]:
    close_old_connections()  # a pool thread's connection may have been dropped meanwhile
    ended: set[str] = set()
    try:
        for start in range(0, len(ids), CHUNK):
            rows = GenerationRequest.objects.filter(
                pk__in=ids[start : start + CHUNK], status__in=TERMINAL_STATUSES
            ).values_list("pk", flat=True)
            ended.update(str(pk) for pk in rows)
    finally:
        if not connection.in_atomic_block:
            connection.close()
    return ended


_slots: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _closing(function: Callable) -> Callable:
    @wraps(function)
    def run(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        finally:
            # This thread's connection: a waiting call holds none. (Not inside an atomic
            # block, which only a test wrapping the whole request in a transaction has.)
            if not connection.in_atomic_block:
                connection.close()

    return run


async def in_database(function: Callable, *args):
    """Run `function(*args)` (sync, using the database) in Django's thread for this request,
    at most OPENAI_DOOR_DB_CONCURRENCY at once per process, and close the connection after:
    however many calls wait, the door holds at most that many connections."""
    loop = asyncio.get_running_loop()
    slots = _slots.get(loop)
    if slots is None:
        slots = _slots[loop] = asyncio.Semaphore(settings.OPENAI_DOOR_DB_CONCURRENCY)
    async with slots:
        return await sync_to_async(_closing(function))(*args)


class Watcher:
    def __init__(self) -> None:
        self.waiters: dict[str, list[asyncio.Future]] = {}
        self.task: asyncio.Task | None = None

    async def wait(self, request_id: str, timeout: float) -> bool:
        """True once the request has ended; False when `timeout` seconds passed first."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.waiters.setdefault(request_id, []).append(future)
        if self.task is None or self.task.done():
            self.task = loop.create_task(self._poll())
        try:
            await asyncio.wait_for(future, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            waiting = self.waiters.get(request_id)
            if waiting and future in waiting:
                waiting.remove(future)
                if not waiting:
                    del self.waiters[request_id]

    async def _poll(self) -> None:
        while self.waiters:
            await asyncio.sleep(settings.OPENAI_DOOR_POLL_SECONDS)
            ids = list(self.waiters)
            if not ids:
                break
            try:
                ended = await sync_to_async(_ended_among, thread_sensitive=False)(ids)
            except Exception:  # the database away for a moment: keep waiting, ask again
                log.exception("could not ask which requests ended; asking again")
                continue
            for request_id in ended:
                for future in self.waiters.pop(request_id, []):
                    if not future.done():
                        future.set_result(True)


_watchers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


async def wait_for_end(request_id, timeout: float) -> bool:
    """Wait (asynchronously) until the request is terminal; False after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    watcher = _watchers.get(loop)
    if watcher is None:
        watcher = _watchers[loop] = Watcher()
    return await watcher.wait(str(request_id), timeout)
