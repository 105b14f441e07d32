"""The Redis broker transport, with one guard that lets a worker outlive a Redis restart.

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

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict:
        if self.connection.client is None:
            raise RedisConnectionError("The broker connection was already closed.")
        return super()._connparams(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel
