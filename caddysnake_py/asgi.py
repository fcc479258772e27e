"""ASGI 3.0 driver (HTTP and lifespan).

One asyncio loop (uvloop when available) runs on its own thread for the whole
interpreter, and it never calls into Go: the two sides meet in C queues.
Go queues events and writes an eventfd only when the loop may be asleep;
``_drain`` then takes every queued event in one call
(``_caddysnake.asgi_take``) and dispatches them: a new request starts a task,
body chunks / send acknowledgements / disconnects resolve that request's
futures. Messages the app sends go through ``_caddysnake.asgi_*``, which check
and copy them synchronously (so ``send()`` raises on bad input) and never
block the loop; they wait in C until ``_caddysnake.asgi_flush``, which the
first one schedules with ``call_soon`` (C calls ``_flush_soon`` for it), so
one loop iteration's messages reach Go with one eventfd write.

Flow control: the body is read from the client only while the app waits in
``receive()``, one chunk at a time; a ``more_body`` send returns once Go holds
no more than a small window of the response (``STREAM_WINDOW``,
``STREAM_BYTES``), so a slow client slows the app. Go writes the chunks that
reach it together with one flush, and acknowledges them with one event.
"""

import asyncio
import collections
import concurrent.futures
import os
import sys
import threading
import traceback

import _caddysnake
from _caddysnake import ClientDisconnected

from . import logs

# Event kinds and flags: see caddysnake.h.
EV_NEW, EV_BODY, EV_SEND_DONE, EV_DISCONNECT, EV_WS_MSG = 1, 2, 3, 4, 6
NEW_HAS_BODY, NEW_TRAILERS, NEW_WEBSOCKET, NEW_LARGE_BODY, NEW_BODY_AHEAD = 1, 2, 8, 16, 32  # (4: TLS, read in C)
H_START, H_EARLY_HINT, H_TRAILERS, H_WS_ACCEPT = 1, 2, 3, 4
WS_SEND, WS_CLOSE = 1, 2
SIG_WANT_BODY, SIG_DONE, SIG_WS_CREDIT = 1, 2, 3

# The HTTP and WebSocket scopes (ASGI 3.0, spec 2.3) are built in C
# (caddysnake.c http_scope); the lifespan spec has its own version.
LIFESPAN_VERSION = {"version": "3.0", "spec_version": "2.0"}  # the lifespan spec's own
LIFESPAN_OFF, LIFESPAN_ON, LIFESPAN_AUTO = 0, 1, 2

# What Go may hold of a streamed response for a request beyond the chunk it
# writes: any number of chunks up to STREAM_BYTES, else STREAM_WINDOW chunks.
# Each time the window fills, the app waits a round trip (Go writes, its
# acknowledgement wakes the loop): 256 KiB rather than uvicorn's 64 KiB,
# whose send() writes to the socket itself with no round trip, made a
# stream of 16 KiB chunks 1.3-1.5x faster (one connection and 100), of
# 64 KiB ones 1.03-1.2x.
STREAM_WINDOW = 2
STREAM_BYTES = 256 * 1024

# A WebSocket app hands back what it received (so Go may read more) once it
# has received this many messages or bytes: a quarter of Go's read-ahead
# window, so the window never closes on an app waiting for a message.
WS_CREDIT_MSGS = _caddysnake.WS_QUEUE // 4
WS_CREDIT_BYTES = _caddysnake.WS_QUEUE_BYTES // 4

_loop = None
_conns = {}  # handle -> _Conn, for requests whose app is still running


def start_loop(efd, kind):
    """Start the loop thread; called once, from Go, with the GIL held."""
    global _loop
    loop = _new_loop(kind)
    _caddysnake.asgi_on_flush_due(_flush_soon)
    ready = threading.Event()

    def run():
        asyncio.set_event_loop(loop)
        loop.add_reader(efd, _drain, efd)
        loop.call_soon(ready.set)
        # Under a task that never ends, not run_forever(): anyio takes the
        # task run_until_complete() runs for the root task, to which its
        # worker threads belong (as under uvicorn's serve()). Without one,
        # each request's task was the root, and a sync endpoint (FastAPI's
        # def, run_in_threadpool) started a new thread per request, which
        # stopped when the request ended: ~2.4x slower than uvicorn, and
        # threading.local state lost.
        loop.run_until_complete(_root())

    threading.Thread(target=run, name="caddysnake-asgi-loop", daemon=True).start()
    if not ready.wait(30):
        raise RuntimeError("the ASGI event loop did not start within 30s")
    _loop = loop
    logs.info("caddysnake: ASGI event loop running (%s.%s)" % (type(loop).__module__, type(loop).__name__))


async def _root():
    """The loop thread's root task (see start_loop): it never ends."""
    await asyncio.get_running_loop().create_future()


def _new_loop(kind):
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise RuntimeError("loop uvloop: uvloop is not installed (pip install uvloop)") from None
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def _drain(efd):
    """The loop's reader callback: one wake-up, every queued event."""
    try:
        os.read(efd, 8)  # reset the eventfd before taking, so no wake-up is lost
    except BlockingIOError:
        pass
    for kind, handle, runner, flags, data in _caddysnake.asgi_take():
        if kind == EV_NEW:
            conn = _conns[handle] = (_WSConn if flags & NEW_WEBSOCKET else _Conn)(handle, flags)
            _start_task(conn.run(runner, data))
        else:
            conn = _conns.get(handle)
            if conn is not None:
                conn.event(kind, flags, data)
    # The steps these events made ready run next, and this flush right after
    # them, in the same iteration: no extra loop round for their replies.
    _flush_soon()


def _start_task(coro):
    """Run a request's task. On Python 3.12+ it starts eagerly: its first
    step runs here, at once, and an app that answers without waiting (most
    do: receive() has the body ready) completes without ever being scheduled
    (measured on the driver alone: ~1 µs less per request, a fifth of its
    Python).
    The task is current during that step, as in any task, so anyio and
    asyncio.current_task() work. An app's own task factory is respected.
    Every request's task has the same name: before 3.12 a task given none
    formats "Task-<n>" as it is made (uvloop's create_task names it only
    after that), one string per request nobody reads (~0.3-0.4 µs of a
    task's ~1.7 µs, on uvloop and 3.11)."""
    if _loop.get_task_factory() is not None:
        _loop.create_task(coro)
    elif _EAGER:
        asyncio.Task(coro, loop=_loop, eager_start=True, name=_TASK_NAME)
    else:
        asyncio.Task(coro, loop=_loop, name=_TASK_NAME)


_EAGER = sys.version_info >= (3, 12)  # Task(eager_start=...) is new in 3.12
_TASK_NAME = "caddysnake-request"

_flush_scheduled = False


def _flush_soon():
    """Go holds the app's messages until asgi_flush: schedule it, once, to run
    after every task step made ready so far, so that a loop iteration's
    messages reach Go in one crossing and one wake-up. Called by _drain, and
    by the C message functions when their message is the first since the
    last flush."""
    global _flush_scheduled
    if not _flush_scheduled:
        _flush_scheduled = True
        _loop.call_soon(_flush)


def _flush():
    global _flush_scheduled
    _flush_scheduled = False
    _caddysnake.asgi_flush()


_EMPTY_BODY = {"type": "http.request", "body": b"", "more_body": False}
_DISCONNECT = {"type": "http.disconnect"}
_TRAILERS_DUE = 2  # _Conn.trailers: the body has ended, the trailers are due


def _as_int(value, what):
    """An int message field given as an int subclass (http.HTTPStatus, an
    IntEnum: FastAPI's status_code=HTTPStatus.CREATED), as a plain int; the
    spec's "int" includes them, and uvicorn takes them. TypeError otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    raise TypeError("%s must be int, not %s" % (what, type(value).__name__))


def _client_left(exc, depth=0):
    """Whether exc is only ClientDisconnected (possibly inside exception
    groups), or was raised while handling one: a framework may turn a
    failed send() into an exception of its own (Starlette's
    ClientDisconnect, which is no OSError, when a scope says spec 2.4;
    uvicorn never makes send() raise). Not a ClientDisconnected raised
    while the app handled an error of its own (sending its error page to a
    client that had left): that error is the app's, and is logged, as under
    uvicorn."""
    if isinstance(exc, ClientDisconnected):
        ctx = exc.__context__
        return ctx is None or depth >= 4 or _departure(ctx) or _client_left(ctx, depth + 1)
    subs = getattr(exc, "exceptions", None)  # BaseExceptionGroup (3.11+)
    if isinstance(subs, tuple) and subs:
        return all(_client_left(e, depth) or isinstance(e, asyncio.CancelledError) for e in subs)
    cause = exc.__cause__ or exc.__context__
    return cause is not None and depth < 4 and _client_left(cause, depth + 1)


def _release_frames(exc):
    """Clear the locals of the frames exc, raised because the client left,
    passed through (the task is over, and so are they): kept in a reference
    cycle (an anyio task group holds the exceptions it collects), they would
    hold what they referenced until the cyclic GC runs. A streamed
    response's generator, left at a yield when send() raised, would hold
    its `finally` (a database cursor, a lock) that long; uvicorn's send()
    does not raise, and the generator runs to its end. Walks the exceptions
    exc carries (group members, causes, contexts), each once."""
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop()
        if not isinstance(e, BaseException) or id(e) in seen:  # None, or a library's odd "exceptions"
            continue
        seen.add(id(e))
        traceback.clear_frames(e.__traceback__)
        todo.extend(getattr(e, "exceptions", None) or ())
        todo += (e.__cause__, e.__context__)


def _departure(exc):
    """Whether exc is how an app or its framework learns that the client
    left: send()'s OSError, a cancelled task (Django cancels the view), or
    Starlette's ClientDisconnect (receive() said http.disconnect before the
    body was whole: a cancelled upload). Such an exception is routine once
    the client has gone; uvicorn logs the last one, which is only noise."""
    if isinstance(exc, (OSError, asyncio.CancelledError)):
        return True
    starlette = sys.modules.get("starlette.requests")
    cls = getattr(starlette, "ClientDisconnect", None)
    return cls is not None and isinstance(exc, cls)


_NOTHING_QUEUED = ()  # _Exchange.queued before a message is queued


class _Exchange:
    """What an HTTP request and a WebSocket connection share: the app's task,
    and futures the Go-side events resolve."""

    __slots__ = ("handle", "flags", "scope", "waiter", "queued", "queued_bytes", "taken", "drained", "send_error",
                 "out_left")

    # Whether Go must hear that the app returned even when it succeeded.
    SIGNAL_END = True
    # The flags of an exchange whose scope make_scope must finish (most
    # HTTP requests need nothing: no call).
    SCOPE_FLAGS = NEW_WEBSOCKET

    def __init__(self, handle, flags):
        self.handle = handle
        self.flags = flags
        self.scope = None
        self.waiter = None  # a receive() waiting for an event
        # Sizes of the messages queued for Go and not yet written, oldest
        # first: Go acknowledges them in order, several at once
        # (CS_EV_SEND_DONE). Counters rather than a future per message: a
        # stream of many small chunks costs no future, wake-up or event each.
        # No deque until the first one: most responses never queue one (a
        # start and a last body are sent without waiting).
        self.queued = _NOTHING_QUEUED
        self.queued_bytes = 0
        self.taken = 0  # messages Go has acknowledged so far
        self.drained = None  # the future send()s wait on for the next acknowledgement
        self.send_error = None  # set when no queued message will be written
        self.out_left = None  # of a response with a Content-Length: bytes not yet sent

    async def run(self, runner, scope):
        failed = True
        try:
            if type(scope) is not dict:
                raise scope  # what kept asgi_take from making it
            if self.flags & self.SCOPE_FLAGS:
                scope = self.make_scope(runner, scope)
            self.scope = scope
            await runner.app(scope, self.receive, self.send)
            failed = self.returned()
        except BaseException as e:  # CancelledError and SystemExit included
            # A client that left is routine (uvicorn logs nothing either):
            # frameworks re-raise send()'s ClientDisconnected, sometimes
            # wrapped in an exception group by anyio task groups.
            if _client_left(e) or (self.gone() and _departure(e)):
                _release_frames(e)
            else:
                logs.error(
                    "error in ASGI app while serving %s\n%s"
                    % (self.what(), "".join(traceback.format_exception(type(e), e, e.__traceback__)))
                )
        finally:
            _conns.pop(self.handle, None)
            # Go's later events no longer reach this exchange: a task of the
            # app still waiting in receive() (or send()) must learn it is over.
            self.ended(failed)
            if failed or self.SIGNAL_END:
                try:  # Go answers 500 / aborts / closes with 1011 when failed
                    _caddysnake.asgi_signal(self.handle, SIG_DONE, int(failed))
                except OSError:
                    pass  # the exchange was already over: nothing to report

    def _count_out(self, n, more):
        """Count n body bytes against the response's Content-Length (called
        while out_left is not None). Going past it, or ending short of it,
        is the app's error, raised in its send() as uvicorn does (not passed
        on quietly), so the client gets a 500 or a cut-off response, not one
        that looks whole. (HEAD and 204/304 responses, whose body Go drops,
        are not counted.)"""
        left = self.out_left - n
        if left < 0 or (left and not more):
            self.out_left = None  # Go cuts what follows, should the app go on
            raise RuntimeError("Response content %s than Content-Length" % ("longer" if left < 0 else "shorter"))
        self.out_left = left

    def _wake(self):
        w, self.waiter = self.waiter, None
        if w is not None and not w.done():
            w.set_result(None)

    def _wait(self):
        """What a receive() waits on for the next event: one future for all
        the waiting receive()s, each awaiting it through a shield, so that
        one which is cancelled (a wait_for() timeout, a task group winding
        down: sse-starlette checks is_disconnected() while it also listens
        for the disconnect) neither cancels the others' wait nor leaves a
        cancelled future for the next receive(), as under uvicorn."""
        w = self.waiter
        if w is None or w.done():
            w = self.waiter = _loop.create_future()
        return asyncio.shield(w)

    def _sent(self, n=1, error=None):
        """Go wrote the n oldest queued messages; with an error, none of the
        queued ones will be written."""
        if error is not None:
            if self.send_error is None:
                self.send_error = error
            self.queued = _NOTHING_QUEUED
            self.queued_bytes = 0
        elif self.send_error is None:
            self.taken += n
            for _ in range(n):
                self.queued_bytes -= self.queued.popleft()
        w, self.drained = self.drained, None
        if w is not None and not w.done():
            w.set_result(None)

    def _stream(self, call, args, size):
        """Queue a body chunk or WebSocket message (call(handle, *args)) for
        Go. Returns 0 while Go holds, beyond it, at most STREAM_WINDOW of
        them or STREAM_BYTES in all; else its number (see taken), and the
        caller must await _room(number) before it returns: a slow client
        slows the app, and what is held per request is bounded. Go always
        has the next one at hand when it finishes one, and many small ones
        reach it together (body chunks are then written with one flush).
        uvicorn and the websockets library likewise return at once until
        their transport holds 64 KiB (their send() writes to the socket
        itself). Not a coroutine: most chunks need no wait."""
        if self.send_error is not None:
            raise self.send_error
        call(self.handle, *args)
        q = self.queued
        if q is _NOTHING_QUEUED:
            q = self.queued = collections.deque()
        q.append(size)
        self.queued_bytes += size
        if len(q) > STREAM_WINDOW and self.queued_bytes > STREAM_BYTES:
            return self.taken + len(q)
        return 0

    async def _room(self, mine):
        """Wait until Go holds no more than the window (see _stream)."""
        while len(self.queued) > STREAM_WINDOW and self.queued_bytes > STREAM_BYTES:
            await self._next_ack(mine)

    async def _next_ack(self, mine):
        """Wait for Go's next acknowledgement; raise if message number mine
        will never be written (one that was is not failed by a later error)."""
        if self.send_error is None:
            if self.drained is None or self.drained.done():
                self.drained = _loop.create_future()
            await asyncio.shield(self.drained)  # as _wait: one cancelled send() spoils no other
        if self.send_error is not None and self.taken < mine:
            raise self.send_error


def _content_length(headers):
    """A request's Content-Length, or -1 (chunked). Go has checked it."""
    for name, value in headers:
        if name == b"content-length":
            return int(value)
    return -1


class _Conn(_Exchange):
    """One HTTP request: the app's receive/send, and its Go-side events."""

    __slots__ = ("chunks", "body_done", "asked", "disconnected", "started", "complete", "trailers", "left")

    # Go ends an HTTP exchange by itself once the response is complete (the
    # last body chunk, trailers or pathsend): a successful return needs no
    # crossing, only a failed one (500 or abort).
    SIGNAL_END = False
    SCOPE_FLAGS = NEW_LARGE_BODY  # make_scope reads its Content-Length

    def __init__(self, handle, flags):
        _Exchange.__init__(self, handle, flags)  # not super(): one per request
        self.body_done = not (flags & NEW_HAS_BODY)
        # Without a body the single http.request event is ready at once.
        self.chunks = [] if flags & NEW_HAS_BODY else [_EMPTY_BODY]
        # A small body's first chunk comes unasked (Go reads it at once).
        self.asked = bool(flags & NEW_BODY_AHEAD)
        self.disconnected = False
        self.started = False
        self.complete = False
        self.trailers = False
        self.left = -1  # of a large body of known length: bytes not yet received

    def make_scope(self, runner, scope):  # a large body's only (SCOPE_FLAGS)
        self.left = _content_length(scope["headers"])
        return scope

    def returned(self):
        if self.complete:
            return False
        if not self.disconnected:
            logs.error(
                "ASGI app returned without %s the response to %s"
                % ("completing" if self.started else "starting", self.what())
            )
        return True

    def gone(self):
        return self.disconnected

    def ended(self, failed):
        self.disconnected = True
        if self.waiter is not None:
            self._wake()
        if self.queued:
            self._sent(error=ClientDisconnected("the response is over"))

    def what(self):
        s = self.scope
        return "%s %s" % (s["method"], s["path"]) if s else "a request"

    # -- events from Go ----------------------------------------------------

    def event(self, kind, flags, data):
        if kind == EV_BODY:
            more = bool(flags & 1)
            self.asked = False
            if self.left > 0:
                self.left -= len(data)
            if data or not more:
                self.chunks.append({"type": "http.request", "body": data, "more_body": more})
            self.body_done = not more
            self._wake()
        elif kind == EV_SEND_DONE:
            self._sent(flags)
        elif kind == EV_DISCONNECT:
            self.disconnected = True
            self._wake()
            self._sent(error=ClientDisconnected("client disconnected"))

    def _finish(self):
        """The response is complete: a receive() waiting for the body (or
        for the end) now gets http.disconnect."""
        self.complete = True
        if self.waiter is not None:
            self._wake()

    # -- the app's callables ---------------------------------------------------

    async def receive(self):
        while True:
            if self.complete:
                # ASGI: receive() after the response was sent says disconnect
                # (as uvicorn does), even if body was left unread (the empty
                # body of a GET included); Go sends no event for it.
                return _DISCONNECT
            if self.disconnected:
                # The client has left: http.disconnect at once, even with body
                # left unread (as uvicorn), so a check such as Starlette's
                # is_disconnected() (one receive() that must not wait) sees it.
                return _DISCONNECT
            if self.chunks:
                return self.chunks.pop(0)
            if not self.body_done and not self.asked:
                self.asked = True
                try:
                    # A large body is read by Go straight into a bytes
                    # object sent along (no copy); a small one is copied.
                    # The buffer is cut to what is left of a body of known
                    # length (left, else -1): the C side allocates no more.
                    if self.flags & NEW_LARGE_BODY:
                        _caddysnake.asgi_signal(self.handle, SIG_WANT_BODY, 1, self.left)
                    else:
                        _caddysnake.asgi_signal(self.handle, SIG_WANT_BODY, 0)
                except OSError:
                    self.disconnected = True
                    continue
            # Waits for a body chunk, or (body done) for the client to leave or
            # the response to finish.
            await self._wait()

    async def send(self, message):
        if self.disconnected:
            # The client is gone. A body chunk with more to come raises, as
            # ASGI 2.4 asks (2.3 allows it), so a stream stops being
            # produced; a message that starts or completes the response is
            # dropped quietly, as under uvicorn: raising there would only
            # undo work the app has done (Starlette skips its background
            # tasks, FastAPI's yield dependencies roll back their
            # transaction).
            if message.get("more_body", False) and message.get("type") == "http.response.body":
                raise ClientDisconnected("client disconnected")
            return
        kind = message["type"]
        if kind == "http.response.body":
            if not self.started:
                raise RuntimeError("http.response.body sent before http.response.start")
            if self.complete:
                raise RuntimeError("http.response.body sent after the response was complete")
            body = message.get("body", b"")
            if type(body) is not bytes and not isinstance(body, (bytes, bytearray, memoryview)):
                raise TypeError("http.response.body 'body' must be bytes, not %s" % type(body).__name__)
            more = message.get("more_body", False)
            if self.out_left is not None:
                self._count_out(len(body), more)
            if more:
                mine = self._stream(_caddysnake.asgi_body, (body, True), len(body))
                if mine:
                    await self._room(mine)
            else:
                _caddysnake.asgi_body(self.handle, body, False)
                if self.trailers:
                    self.trailers = _TRAILERS_DUE
                else:
                    self._finish()
        elif kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            status = message["status"]
            if type(status) is not int:
                status = _as_int(status, "http.response.start 'status'")
            # trailers: True (they will be sent), None (announced, but the
            # client did not send "TE: trailers": dropped) or False;
            # _TRAILERS_DUE once the body has ended.
            if message.get("trailers", False):
                self.trailers = True if self.flags & NEW_TRAILERS else None
            left = _caddysnake.asgi_headers(
                self.handle, H_START, status, message.get("headers", ()), int(bool(self.trailers)))
            if left is not None and (status == 204 or status == 304 or self.scope["method"] == "HEAD"):
                left = None  # no body goes out: nothing to count
            self.out_left = left
            self.started = True
        elif kind == "http.response.trailers":
            if self.trailers is None and self.complete:  # the client cannot take them
                if not message.get("more_trailers", False):
                    self.trailers = False  # that was the last one
                return
            if self.trailers is not _TRAILERS_DUE or self.complete:
                raise RuntimeError(
                    "http.response.trailers sent after the last one" if self.complete else
                    "http.response.trailers not announced by http.response.start" if self.trailers is False else
                    "http.response.trailers sent before the body's last chunk")
            more = bool(message.get("more_trailers", False))
            _caddysnake.asgi_headers(self.handle, H_TRAILERS, 0, message.get("headers", ()), int(more))
            if not more:
                self._finish()
        elif kind == "http.response.pathsend":
            if not self.started or self.complete:
                raise RuntimeError("http.response.pathsend must follow http.response.start")
            path = message["path"]
            if not isinstance(path, str) or not os.path.isabs(path):
                raise ValueError("http.response.pathsend 'path' must be an absolute path str")
            _caddysnake.asgi_pathsend(self.handle, path)
            self._finish()
        elif kind == "http.response.early_hint":
            if not self.started:
                links = [(b"link", link) for link in message.get("links", ())]
                _caddysnake.asgi_headers(self.handle, H_EARLY_HINT, 103, links, 0)
        else:
            raise ValueError("unexpected ASGI message type %r on an HTTP connection" % (kind,))


class _WSConn(_Exchange):
    """One WebSocket connection: the ASGI websocket protocol over Go's conn.

    Before websocket.accept the app may close (HTTP 403) or answer with an
    HTTP response (websocket.http.response.*). Messages from the client are
    queued by Go ahead of the app, a bounded number at a time; the app hands
    back what it received in lumps (WS_CREDIT_*) so Go reads on.
    """

    __slots__ = ("connected", "accepted", "denying", "closed", "ended_by_app", "queue", "code", "reason", "owed_msgs",
                 "owed_bytes")

    def __init__(self, handle, flags):
        super().__init__(handle, flags)
        self.connected = False  # websocket.connect delivered
        self.accepted = False
        self.denying = False  # sending websocket.http.response.*
        self.closed = False  # the connection is over (either side)
        self.ended_by_app = False  # by its websocket.close or a whole denial response
        self.queue = collections.deque()  # (message, its size)
        self.owed_msgs = 0  # received, not yet handed back to Go
        self.owed_bytes = 0
        self.code = 1006
        self.reason = ""

    def make_scope(self, runner, scope):
        return runner.ws_scope(scope)

    def returned(self):
        if self.denying and not self.closed:
            logs.error("ASGI app returned without completing the HTTP response to %s" % self.what())
            return True  # Go answers 500, or cuts the response short
        if self.accepted or self.closed or self.denying:
            return False  # Go closes with 1000 (or has refused, or answered)
        logs.error("ASGI app returned without accepting or closing %s" % self.what())
        return True  # Go answers 500

    def gone(self):
        return self.closed

    def ended(self, failed):
        if not self.closed:
            self.closed, self.code = True, 1011 if failed else 1000
        self._wake()
        self._sent(error=ClientDisconnected("WebSocket closed (%d)" % self.code))

    def what(self):
        return "WebSocket %s" % (self.scope["path"] if self.scope else "?")

    def event(self, kind, flags, data):
        if kind == EV_WS_MSG:
            if flags & 1:
                self.queue.append(({"type": "websocket.receive", "text": data.decode("utf-8")}, len(data)))
            else:
                self.queue.append(({"type": "websocket.receive", "bytes": data}, len(data)))
            self._wake()
        elif kind == EV_SEND_DONE:
            self._sent(flags)
        elif kind == EV_DISCONNECT:
            if not self.closed:
                self.closed = True
                self.code = flags or 1005
                self.reason = data.decode("utf-8", "replace") if data else ""
            self._wake()
            self._sent(error=ClientDisconnected("WebSocket closed (%d)" % self.code))

    def _check_subprotocol(self, headers):
        """The subprotocol chosen (by 'subprotocol' or a header) must be one
        the client offered."""
        for pair in headers:
            if (type(pair) is tuple or type(pair) is list) and len(pair) == 2:
                name, value = pair
                if isinstance(name, bytes) and name.lower() == b"sec-websocket-protocol" and isinstance(value, bytes):
                    if value.decode("latin-1").strip() not in self.scope["subprotocols"]:
                        raise ValueError("websocket.accept: the subprotocol was not offered by the client")

    async def receive(self):
        if not self.connected:
            self.connected = True
            return {"type": "websocket.connect"}
        while True:
            if self.queue:
                message, size = self.queue.popleft()
                self.owed_msgs += 1
                self.owed_bytes += size
                if self.owed_msgs >= WS_CREDIT_MSGS or self.owed_bytes >= WS_CREDIT_BYTES:
                    try:
                        _caddysnake.asgi_signal(self.handle, SIG_WS_CREDIT, self.owed_msgs, self.owed_bytes)
                    except OSError:
                        pass
                    self.owed_msgs = self.owed_bytes = 0
                return message
            if self.closed:
                return {"type": "websocket.disconnect", "code": self.code, "reason": self.reason}
            await self._wait()

    async def send(self, message):
        kind = message["type"]
        if self.closed:
            if self.ended_by_app:  # the app's mistake, not a client that left: logged
                raise RuntimeError("%s sent after the app's websocket.close or HTTP response" % (kind,))
            raise ClientDisconnected("WebSocket closed (%d)" % self.code)
        if kind == "websocket.send":
            if not self.accepted:
                raise RuntimeError("websocket.send before websocket.accept")
            data = message.get("bytes")
            if data is None:
                data = message.get("text")
                if not isinstance(data, str):
                    raise TypeError("websocket.send needs 'bytes' (bytes) or 'text' (str)")
            elif not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError("websocket.send 'bytes' must be bytes, not %s" % type(data).__name__)
            mine = self._stream(_caddysnake.asgi_ws, (WS_SEND, 0, data), len(data))
            if mine:
                await self._room(mine)
        elif kind == "websocket.accept":
            if self.accepted or self.denying:
                raise RuntimeError("websocket.accept sent twice or after an HTTP response")
            headers = list(message.get("headers") or ())
            sub = message.get("subprotocol")
            if sub is not None:
                if not isinstance(sub, str):
                    raise TypeError("websocket.accept 'subprotocol' must be str")
                headers.append((b"sec-websocket-protocol", sub.encode("latin-1")))
            self._check_subprotocol(headers)
            _caddysnake.asgi_headers(self.handle, H_WS_ACCEPT, 101, headers, 0)
            self.accepted = True
        elif kind == "websocket.close":
            if self.denying:
                raise RuntimeError("websocket.close during an HTTP denial response")
            code = message.get("code") or 1000
            if type(code) is not int:
                code = _as_int(code, "websocket.close 'code'")
            # Lenient like uvicorn: before accept the reason is unused (403),
            # and FastAPI passes a list of validation errors as the reason.
            reason = message.get("reason") or ""
            if not isinstance(reason, str):
                reason = str(reason)
            reason = reason.encode("utf-8")[:123].decode("utf-8", "ignore")  # RFC 6455 5.5
            _caddysnake.asgi_ws(self.handle, WS_CLOSE, code, reason)
            self.closed, self.ended_by_app, self.code, self.reason = True, True, code, reason
        elif kind == "websocket.http.response.start":
            if self.accepted or self.denying:
                raise RuntimeError("websocket.http.response.start after accept or twice")
            status = message["status"]
            if type(status) is not int:
                status = _as_int(status, "websocket.http.response.start 'status'")
            left = _caddysnake.asgi_headers(self.handle, H_START, status, message.get("headers", ()), 0)
            self.out_left = None if status == 204 or status == 304 else left
            self.denying = True
        elif kind == "websocket.http.response.body":
            if not self.denying:
                raise RuntimeError("websocket.http.response.body before websocket.http.response.start")
            body = message.get("body", b"")
            more = bool(message.get("more_body", False))
            if self.out_left is not None:
                self._count_out(len(body), more)
            if more:
                mine = self._stream(_caddysnake.asgi_body, (body, True), len(body))
                if mine:
                    await self._room(mine)
            else:
                _caddysnake.asgi_body(self.handle, body, False)
                self.closed, self.ended_by_app, self.code = True, True, 1000
        else:
            raise ValueError("unexpected ASGI message type %r on a WebSocket connection" % (kind,))


class _LifespanFailed(Exception):
    """A lifespan phase failed; the message says why."""


class Runner:
    """One loaded ASGI app (per Caddy handler): lifespan, its state, and
    WebSocket scopes."""

    def __init__(self, app, lifespan):
        self.app = app
        self.lifespan = lifespan  # LIFESPAN_OFF / _ON / _AUTO
        self.state = {}  # lifespan state: C copies it into every request's scope
        self._startup = self._shutdown = self._queue = None

    def ws_scope(self, scope):
        """A WebSocket's scope, from the HTTP scope C built for its request."""
        scope["type"] = "websocket"
        scope["scheme"] = "wss" if scope["scheme"] == "https" else "ws"
        subprotocols = []
        for name, value in scope["headers"]:
            if name == b"sec-websocket-protocol":
                subprotocols += [p.strip() for p in value.decode("latin-1").split(",") if p.strip()]
        scope["subprotocols"] = subprotocols
        ext = {"websocket.http.response": {}}
        if "tls" in scope["extensions"]:
            ext["tls"] = scope["extensions"]["tls"]
        scope["extensions"] = ext
        del scope["method"]
        return scope

    # -- lifespan (called from Go threads; block until done) -------------------

    def startup(self, timeout):
        return self._phase_blocking("startup", timeout)

    def shutdown(self, timeout):
        if self._queue is not None:  # startup ran
            return self._phase_blocking("shutdown", timeout)
        return None

    def _phase_blocking(self, phase, timeout):
        """Run a lifespan phase on the loop; the calling Go thread waits with
        the GIL released (Future.result blocks on a lock). Returns None, or
        why the phase failed: what Caddy shows, as uvicorn shows the app's
        message (no traceback of this driver's)."""
        fut = asyncio.run_coroutine_threadsafe(self._run_phase(phase), _loop)
        try:
            fut.result(timeout)
        except concurrent.futures.TimeoutError:  # not the builtin before 3.11
            fut.cancel()
            return "lifespan %s did not complete within %gs" % (phase, timeout)
        except _LifespanFailed as e:
            return str(e)
        return None

    async def _run_phase(self, phase):
        if phase == "startup":
            self._queue = asyncio.Queue()
            self._startup = _loop.create_future()
            self._shutdown = _loop.create_future()
            scope = {"type": "lifespan", "asgi": LIFESPAN_VERSION, "state": self.state}
            _loop.create_task(self._main(scope))
        self._queue.put_nowait({"type": "lifespan." + phase})
        await (self._startup if phase == "startup" else self._shutdown)

    async def _main(self, scope):
        try:
            await self.app(scope, self._queue.get, self._lifespan_send)
        except BaseException as e:
            if self.lifespan == LIFESPAN_AUTO and self._without("raised %s" % type(e).__name__):
                return
            tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
            self._fail("the app raised during lifespan:\n" + tb)
        else:
            # Returning is how an app ends the lifespan scope. Before it
            # answered startup, it takes no lifespan events (a framework-free
            # app's `if scope["type"] != "http": return`); after, shutdown has
            # nothing left to do. uvicorn serves both, on or auto.
            if not self._without("returned") and not self._shutdown.done():
                self._shutdown.set_result(None)

    def _without(self, what):
        """An app that ends the lifespan scope before answering startup does
        not support lifespan: it is served without lifespan events, as under
        uvicorn. Under lifespan on, only if it returned: an exception then
        stops start-up (as under uvicorn)."""
        if self._startup.done():
            return False
        logs.info("caddysnake: the ASGI app %s in the lifespan scope before answering startup: "
                  "it does not support lifespan; serving it without lifespan events (lifespan %s)"
                  % (what, "auto" if self.lifespan == LIFESPAN_AUTO else "on"))
        self._queue = None  # no shutdown either
        self._startup.set_result(None)
        return True

    def _fail(self, message):
        for fut in (self._startup, self._shutdown):
            if not fut.done():
                fut.set_exception(_LifespanFailed(message))
                return
        logs.error("ASGI lifespan: " + message)

    async def _lifespan_send(self, message):
        kind = message["type"]
        fut = self._startup if kind.startswith("lifespan.startup.") else self._shutdown
        if kind.endswith(".complete"):
            if not fut.done():
                fut.set_result(None)
        elif kind.endswith(".failed"):
            if not fut.done():
                fut.set_exception(_LifespanFailed("%s: %s" % (kind, message.get("message", ""))))
        else:
            raise ValueError("unexpected ASGI message type %r in lifespan" % (kind,))
