"""The broker transports, each with one guard.

Filesystem (the embedded defaults): kombu 5.7.0 creates a message file and then writes it,
so a worker that lists the folder in between moves an empty file away, fails to parse it
and quits with "Unrecoverable error: JSONDecodeError" (seen with 2,000 submissions at once
and 0.1 s polling). `FilesystemTransport` writes each message under a name the reader
ignores and renames it into place, which is atomic on one filesystem.

Redis: one guard that lets a worker outlive a Redis restart.

Celery 5.7 (`Consumer.on_connection_error_after_connected`) first `collect()`s a broken broker
connection, which drops the transport's link to its connection settings, and then `close()`s
it. When the first close stopped half-way (the BRPOP socket was already dead), the second
close reaches the channel's "restore unacknowledged messages" step, which asks for a new
Redis client built from those settings: kombu raises AttributeError ('NoneType' object has
no attribute 'hostname'), which is not a connection error, and the worker quits with
"Unrecoverable error". Celery 5.6 did not close twice; kombu 5.7.0 is the newest release.

The guard turns that case into the connection error it is, which kombu's close ignores and
after which Celery reconnects. Nothing is lost by skipping the restore: with acks_late the
messages stay in Redis's unacked set and come back after the visibility timeout, and the
database row (claimed with a conditional UPDATE) makes a second delivery harmless.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem as kombu_filesystem
from kombu.transport import redis as kombu_redis
from kombu.utils.json import dumps
from redis.exceptions import ConnectionError as RedisConnectionError


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict:
        if self.connection.client is None:
            raise RedisConnectionError("The broker connection was already closed.")
        return super()._connparams(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel


class FilesystemChannel(kombu_filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        """Put a message on `queue`: written in full under a temporary name (no `.msg`
        suffix, so `_get` skips it), then renamed to the name `_get` looks for."""
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f"writing-{uuid.uuid4()}.part")
        try:
            with open(partial, "wb") as handle:
                handle.write(dumps(payload).encode())
            os.replace(partial, final)
        except OSError as error:
            raise ChannelError(f"Cannot add file {final!r} to directory") from error


class FilesystemTransport(kombu_filesystem.Transport):
    Channel = FilesystemChannel
