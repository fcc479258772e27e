"""Text streams that write to Caddy's log.

sys.stdout (info), sys.stderr (warn) and every request's wsgi.errors (error)
are LogStreams: what is written becomes records in Caddy's logger, so the
output of print() and of the logging module ends up with the server's logs
instead of a terminal that may not exist.

A record is what one write() completed: print()'s line, or a whole logging
record with its traceback (logging.StreamHandler writes each in one call),
so a traceback is one entry, not one per line. A logging record keeps its
own level (ERROR stays an error even on sys.stderr, WARNING a warning even
on wsgi.errors, as Flask's handler writes there); other writes take the
stream's.
"""

import io
import sys
import threading

import _caddysnake
from _caddysnake import LOG_ERROR, LOG_INFO, LOG_WARN


class LogStream(io.TextIOBase):
    """A line-buffered text stream; each line is one log record."""

    def __init__(self, level, name):
        super().__init__()
        self._level = level
        self._name = name
        self._lock = threading.Lock()
        self._buf = ""

    @property
    def name(self):
        return self._name

    @property
    def encoding(self):
        return "utf-8"

    def writable(self):
        return True

    def isatty(self):
        return False

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError("write() argument must be str, not %s" % type(s).__name__)
        with self._lock:
            data = self._buf + s
            head, sep, tail = data.rpartition("\n")
            self._buf = tail
        if sep:
            _caddysnake.log(_record_level(sys._getframe(1), self._level), head)
        return len(s)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        with self._lock:
            data, self._buf = self._buf, ""
        if data:
            _caddysnake.log(self._level, data)


def _record_level(caller, default):
    """The level of the logging record `caller` is writing, if it is
    logging.StreamHandler.emit (the handler of logging's defaults, Django's
    and Flask's); else default."""
    logging = sys.modules.get("logging")
    if logging is None or caller.f_code is not logging.StreamHandler.emit.__code__:
        return default
    levelno = getattr(caller.f_locals.get("record"), "levelno", None)
    if not isinstance(levelno, int):
        return default
    if levelno >= logging.ERROR:
        return LOG_ERROR
    return LOG_WARN if levelno >= logging.WARNING else LOG_INFO


stdout = LogStream(LOG_INFO, "<caddy log: stdout>")
stderr = LogStream(LOG_WARN, "<caddy log: stderr>")
errors = LogStream(LOG_ERROR, "<caddy log: wsgi.errors>")


def install():
    sys.stdout = stdout
    sys.stderr = stderr


def error(message):
    _caddysnake.log(LOG_ERROR, message)


def warn(message):
    _caddysnake.log(LOG_WARN, message)


def info(message):
    _caddysnake.log(LOG_INFO, message)
