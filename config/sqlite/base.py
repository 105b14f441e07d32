"""Django's SQLite backend, with the process's writers taking turns before SQLite's lock.

SQLite lets one writer at a time hold its lock; the others wait in its busy handler, which
sleeps and retries. With a thousand worker threads finishing calls at once (issue 16: the
embedded defaults broke between 500 and 750 in flight with "database is locked"), the
retries of hundreds of threads compete for the GIL with the one thread that holds the lock,
and its transaction then takes longer than any timeout. Here each write transaction (and
each write statement outside one) first takes a lock of this process, so the threads of one
process queue in the kernel, costing nothing, and only the processes (web, worker, beat)
meet in SQLite's busy handler. Reads never wait (the file is in WAL mode).

Use it as the ENGINE `config.sqlite`; everything else is Django's sqlite3 backend.
"""

from __future__ import annotations

import threading

from django.db import OperationalError
from django.db.backends.sqlite3 import base

WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")
# One per process: every thread's connection to the file shares it.
_writer = threading.RLock()


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._holds_writer = False
        self.execute_wrappers.append(self._write_in_turn)

    def _wait_seconds(self) -> float:
        return float(self.settings_dict["OPTIONS"].get("timeout", 5))

    def _take_turn(self) -> None:
        if not _writer.acquire(timeout=self._wait_seconds()):
            raise OperationalError("database is locked (waited for this process's writers)")

    def _start_transaction_under_autocommit(self):
        if not self._holds_writer:
            self._take_turn()
            self._holds_writer = True
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self._end_turn()
            raise

    def _end_turn(self) -> None:
        if self._holds_writer:
            self._holds_writer = False
            _writer.release()

    def _commit(self):
        try:
            return super()._commit()
        finally:
            self._end_turn()

    def _rollback(self):
        try:
            return super()._rollback()
        finally:
            self._end_turn()

    def _close(self):
        try:
            return super()._close()
        finally:
            self._end_turn()

    def _write_in_turn(self, execute, sql, params, many, context):
        if self.in_atomic_block or not sql.lstrip()[:7].upper().startswith(WRITES):
            return execute(sql, params, many, context)
        self._take_turn()
        try:
            return execute(sql, params, many, context)
        finally:
            _writer.release()
