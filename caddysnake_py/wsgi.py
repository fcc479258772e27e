"""PEP 3333 driver: runs one request through a WSGI app.

The C shim calls ``handle(app, environ, req, body)`` on a worker thread
with the GIL held. ``environ`` already holds the CGI keys (built from Go's
packed request); ``req`` is the _caddysnake.Request for this request only.

Response flow: nothing is sent until the first non-empty body chunk (or the
end of the body), and then status, headers and that chunk cross to Go in one
call. Streamed chunks are flushed as they are produced; a single-chunk body is
not flushed, so Go sends headers and body in one write with a Content-Length.
"""

import io
import os
import stat
import traceback

from _caddysnake import ClientDisconnected

from . import logs

# Large enough that big uploads cross into Go in few calls; allocated only for
# requests that have a body.
INPUT_BUFFER = 64 * 1024


class FileWrapper:
    """wsgi.file_wrapper. A wrapped regular file is sent by Go from its
    descriptor (sendfile(2) where possible); anything else is iterated."""

    def __init__(self, filelike, blksize=8192):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        return self

    def __next__(self):
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration


class _Body(io.RawIOBase):
    """The request body as a raw stream; Go reads straight into the buffer.
    wsgi.input is an _Input over it, which provides read(n), readline(n),
    readlines() and iteration with exact PEP 3333 semantics."""

    def __init__(self, req):
        self.readinto = req.readinto
        self.readinto_full = req.readinto_full
        self.read_full = req.read_full
        self.tell = req.tell  # bytes read so far: see _Input

    def readable(self):
        return True

    def readall(self):
        """The rest of the body (wsgi.input.read()): in one call into Go for
        a body of known length. RawIOBase's readall would call into Go once
        per 8 KiB, each time dropping and retaking the GIL, then join."""
        data = self.read_full(-1)
        if data is not None:
            return data
        chunks = []  # a chunked body, in pieces as large as the input buffer
        while True:
            data = self.read_full(INPUT_BUFFER)
            chunks.append(data)
            if len(data) < INPUT_BUFFER:
                return b"".join(chunks)


class _Input(io.BufferedReader):
    """wsgi.input for a body Go reads as the app asks. A large read(n) or
    readinto() (Django's read(CONTENT_LENGTH), multipart parsers' 64 KiB
    pieces) with nothing buffered is filled by one call into Go;
    BufferedReader would call once per piece that has arrived, each time
    dropping and retaking the GIL (a 64 KiB upload read with read(65536):
    ~9% fewer requests/s). Whether anything is buffered is the raw
    position (bytes Go handed over) against the reader's. read_full also
    allocates no more than the body: BufferedReader's read(n) allocates n
    up front (read(2**40) was a MemoryError)."""

    def read(self, size=-1):
        if size is None or size < INPUT_BUFFER:
            return super().read(size)
        raw = self.raw
        have = raw.tell() - self.tell()  # buffered
        if have == 0:
            return raw.read_full(size)
        if have >= size:
            return super().read(size)
        return self.read1(have) + raw.read_full(size - have)

    def readinto(self, b):
        if memoryview(b).nbytes >= INPUT_BUFFER and self.raw.tell() == self.tell():
            return self.raw.readinto_full(b)
        return super().readinto(b)


_BASE = {
    "SERVER_SOFTWARE": "caddysnake",  # RFC 3875 4.1.17; gunicorn sets its own
    "wsgi.version": (1, 0),
    "wsgi.multithread": True,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
    "wsgi.errors": logs.errors,
    "wsgi.file_wrapper": FileWrapper,
    # Reads always end at the end of the body, chunked or not.
    "wsgi.input_terminated": True,
}


def handle(app, environ, req, body):
    """body: the whole request body when Go read it ahead (bytes), else
    whether there is one to read through req (bool)."""
    environ.update(_BASE)
    if body.__class__ is bytes:
        environ["wsgi.input"] = io.BytesIO(body)  # shares body: no copy
    else:
        environ["wsgi.input"] = _Input(_Body(req), INPUT_BUFFER) if body else io.BytesIO()
    resp = _Response(req)
    result = None
    try:
        result = app(environ, resp.start_response)
        if type(result) is list and len(result) == 1:
            # The common case (and Flask's): one crossing, no flush.
            resp._send(result[0], False)
        else:
            resp.consume(result)
    except ClientDisconnected:
        pass  # nobody is left to answer; close() still runs below
    except BaseException as e:  # SystemExit from an app must not stop Caddy
        resp.fail(environ, e, "error in WSGI app")
    finally:
        close = None if type(result) is list else getattr(result, "close", None)
        if close is not None:
            try:
                close()
            except BaseException as e:
                # The response is already complete (or already failed): log only.
                _log_error(environ, e, "error in the WSGI response's close()")


def _log_error(environ, exc, what):
    if isinstance(exc, ClientDisconnected):
        return
    logs.error(
        "%s while serving %s %s\n%s"
        % (
            what,
            environ.get("REQUEST_METHOD", "?"),
            environ.get("REQUEST_URI") or environ.get("PATH_INFO", "?"),
            "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        )
    )


# Status lines already checked, and their codes: an app answers with a few
# ("200 OK", "404 NOT FOUND"), often the same str object, whose hash is kept.
# Bounded, so an app making up reasons cannot grow it without end.
_CODES = {}
_CODES_MAX = 256


def _status_code(status):
    """The numeric code of a PEP 3333 status line ("200 OK"); ValueError if malformed."""
    if not isinstance(status, str):
        raise TypeError("status must be str, not %s" % type(status).__name__)
    code = status[:3]
    if (
        len(code) == 3
        and code.isdigit()
        and code.isascii()
        and (len(status) == 3 or status[3] == " ")
        and "\r" not in status
        and "\n" not in status
        and "\0" not in status
    ):
        code = int(code)
        if len(_CODES) < _CODES_MAX:
            _CODES[status] = code
        return code
    raise ValueError("malformed status %r: expected a line such as '200 OK'" % (status,))


class _Response:
    __slots__ = ("req", "code", "headers", "sent")

    def __init__(self, req):
        self.req = req
        self.code = 0
        self.headers = None
        self.sent = False

    def start_response(self, status, headers, exc_info=None):
        if exc_info is not None:
            try:
                if self.sent:
                    # Too late to change the response: PEP 3333 says re-raise.
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # break the frame <-> traceback cycle
        elif self.headers is not None:
            raise AssertionError("start_response() called again without exc_info")
        code = _CODES.get(status) if type(status) is str else None
        if code is None:
            code = _status_code(status)
        if type(headers) is not list:
            # PEP 3333 asks for a list; gunicorn takes a tuple too, and apps
            # written against it pass one.
            if not isinstance(headers, (list, tuple)):
                raise TypeError("response headers must be a list, not %s" % type(headers).__name__)
            headers = list(headers)
        self.code, self.headers = code, headers
        return self.write

    def write(self, data):
        """The legacy write() callable: the bytes are on their way to the
        client (or queued for a writer that sends them at once) when it
        returns, as PEP 3333 allows."""
        if data or type(data) is not bytes:  # None or str still raise TypeError
            self._send(data, True)

    def _send(self, data, flush):
        if type(data) is not bytes and not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("WSGI response body chunks must be bytes, not %s" % type(data).__name__)
        if self.sent:
            self.req.send(0, None, data, flush)
            return
        if self.headers is None:
            raise AssertionError("the app returned a body without calling start_response()")
        self.req.send(self.code, self.headers, data, flush)
        self.sent = True

    def consume(self, result):
        """Send an iterable other than a one-chunk list (see handle)."""
        if type(result) is FileWrapper and self._sendfile(result):
            return
        for chunk in result:
            if chunk or type(chunk) is not bytes:  # None or "" still raise TypeError
                self._send(chunk, True)
        if not self.sent:
            self._send(b"", False)

    def _sendfile(self, wrapper):
        """Serve a wrapped regular file from its descriptor; False to iterate instead."""
        f = wrapper.filelike
        try:
            fd = f.fileno()
            st = os.fstat(fd)
            offset = f.tell() if hasattr(f, "tell") else 0
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            return False
        if not stat.S_ISREG(st.st_mode) or self.headers is None or self.sent:
            return False
        if getattr(wrapper, "close", None) != getattr(f, "close", None):
            # The app's own close() runs once the request is done (PEP 3333)
            # and may change the file (truncate it, rewrite it): its bytes are
            # read here, before that, not by Go after it.
            return False
        count = max(0, st.st_size - offset)
        headers = self.headers
        declared = [v for k, v in headers if type(k) is str and k.lower() == "content-length"]
        if declared:
            try:
                count = min(count, int(declared[0]))
            except ValueError:
                pass  # Go rejects the header with a 500
        else:
            headers = headers + [("Content-Length", str(count))]
        self.req.send(self.code, headers, b"", False)
        self.sent = True
        self.req.sendfile(fd, offset, count)
        return True

    def fail(self, environ, exc, what):
        """Log the app's error; answer 500 if nothing was sent, else abort."""
        _log_error(environ, exc, what)
        if not self.sent:
            try:
                self.req.send(
                    500,
                    [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "21")],
                    b"Internal Server Error",
                    False,
                )
                self.sent = True
                return
            except Exception:
                pass  # the headers had already reached Go: fall through to abort
        self.req.abort()
