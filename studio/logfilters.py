"""Logging filters named in settings.LOGGING."""

from __future__ import annotations

import logging


class OneLineForbidden(logging.Filter):
    """A 403 is an expected answer (a role check, an object of another user), not a crash:
    log it as one line with who asked and why, without Django's traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "status_code", None) != 403:
            return True
        reason = ""
        if record.exc_info and record.exc_info[1] is not None and str(record.exc_info[1]):
            reason = f": {record.exc_info[1]}"
        request = getattr(record, "request", None)
        user = getattr(request, "user", None)
        who = user.get_username() if user is not None and user.is_authenticated else "anonymous"
        record.msg = f"{record.getMessage()} (user {who}){reason}"
        record.args = ()
        record.exc_info = record.exc_text = None
        return True
