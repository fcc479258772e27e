"""Text streams that write to Caddy's log.

sys.stdout (info), sys.stderr (warn) and every request's wsgi.errors (error)
are LogStreams: complete lines become log records in Caddy's logger, so the
output of print() and of the logging module ends up with the server's logs
instead of a terminal that may not exist.
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
            for line in head.split("\n"):
                _caddysnake.log(self._level, line)
        return len(s)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        with self._lock:
            data, self._buf = self._buf, ""
        if data:
            _caddysnake.log(self._level, data)


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
