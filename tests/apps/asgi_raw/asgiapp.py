"""A framework-free ASGI 3.0 application exercising the HTTP and lifespan specs.

Routing is on scope["path"] (so under ``handle_path /prefix/*`` the routes are
``/prefix/<route>``; the prefix is stripped with root_path).  Anything not
listed in ROUTES returns the scope as JSON (see ``describe``), so
``/scope/<anything>`` shows how a request was translated.

Events (what the app saw after a disconnect, ...) are kept in the module-level
``EVENTS`` list and read back with ``GET /events?id=<ident>``.

Lifespan: startup puts {"startup": "raw-startup-done", "counter": 0} in the
state (and appends "startup" to LIFESPAN_LOG); shutdown appends "shutdown".

Every loop is bounded (MAX_STREAM_SECONDS) so a misbehaving bridge cannot
keep a task alive for ever.
"""

import asyncio
import contextvars
import gc
import hashlib
import json
import os
import sys
import time
from urllib.parse import parse_qs

EVENTS = []          # [(ident, event)]
LIFESPAN_LOG = []
LIFESPAN_ASGI = {}  # the lifespan scope's "asgi" dict
MAX_STREAM_SECONDS = 20.0


# ---------------------------------------------------------------- helpers

def record(ident, event):
    EVENTS.append((ident, event))


def qs(scope):
    parsed = parse_qs(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    return {k: v[-1] for k, v in parsed.items()}


def describe(obj):
    """JSON-able view of a scope value that keeps bytes distinguishable:
    bytes -> {"$b": latin-1 text}; tuples -> {"$t": [...]}."""
    if isinstance(obj, bytes):
        return {"$b": obj.decode("latin-1")}
    if isinstance(obj, tuple):
        return {"$t": [describe(x) for x in obj]}
    if isinstance(obj, list):
        return [describe(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): describe(v) for k, v in obj.items()}
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return {"$repr": repr(obj)}


async def read_body(receive):
    """All http.request events of the body: (body bytes, [(len, more_body, type)])."""
    chunks, events = [], []
    while True:
        msg = await receive()
        if msg["type"] != "http.request":
            events.append((0, False, msg["type"]))
            break
        body = msg.get("body", b"")
        events.append((len(body), msg.get("more_body", False), type(body).__name__))
        chunks.append(body)
        if not msg.get("more_body", False):
            break
    return b"".join(chunks), events


async def respond(send, status, body, content_type=b"text/plain; charset=utf-8", headers=()):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type),
                            (b"content-length", str(len(body)).encode())] + list(headers)})
    await send({"type": "http.response.body", "body": body})


async def respond_json(send, obj, status=200, headers=()):
    await respond(send, status, json.dumps(obj).encode(), b"application/json", headers)


# ---------------------------------------------------------------- routes

async def hello(scope, receive, send):
    await respond(send, 200, b"hello asgi")


async def scope_view(scope, receive, send):
    await read_body(receive)
    await respond_json(send, {"scope": describe(scope),
                              "types": {k: type(v).__name__ for k, v in scope.items()}})


async def echo_streamed(scope, receive, send):
    """Answers first, then echoes each body chunk's length."""
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"start\n", "more_body": True})
    while True:
        msg = await receive()
        if msg["type"] != "http.request":
            break
        await send({"type": "http.response.body", "body": b"%d\n" % len(msg["body"]), "more_body": True})
        if not msg.get("more_body"):
            break
    await send({"type": "http.response.body", "body": b"end\n"})


async def echo(scope, receive, send):
    body, _ = await read_body(receive)
    ctype = dict(scope["headers"]).get(b"content-type", b"application/octet-stream")
    await respond(send, 200, body, ctype)


async def upload(scope, receive, send):
    """Hash a (large) body chunk by chunk; report how it arrived."""
    h = hashlib.sha256()
    n_events = n_nonempty = size = 0
    more_flags = []
    max_chunk = 0
    while True:
        msg = await receive()
        assert msg["type"] == "http.request", msg
        body = msg.get("body", b"")
        n_events += 1
        if body:
            n_nonempty += 1
        size += len(body)
        max_chunk = max(max_chunk, len(body))
        h.update(body)
        more = msg.get("more_body", False)
        if len(more_flags) < 3:
            more_flags.append(more)
        if not more:
            break
    await respond_json(send, {"events": n_events, "nonempty": n_nonempty, "size": size,
                              "sha256": h.hexdigest(), "max_chunk": max_chunk,
                              "first_more_flags": more_flags})


async def body_events(scope, receive, send):
    """Every http.request event; with ?after=1 also whether one more receive()
    blocks (it must: the body is over and the response not yet finished)."""
    _, events = await read_body(receive)
    out = {"events": events}
    if qs(scope).get("after"):
        try:
            msg = await asyncio.wait_for(receive(), 0.3)
            out["after"] = msg["type"]
        except asyncio.TimeoutError:
            out["after"] = "blocked"
    await respond_json(send, out)


async def stream(scope, receive, send):
    """?n= chunks "chunk-<i>;" sent with more_body, ?delay= seconds apart;
    with ?block=1 the delay blocks the loop (time.sleep), as careless async
    code does."""
    q = qs(scope)
    n, delay = int(q.get("n", "5")), float(q.get("delay", "0.2"))
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    for i in range(n):
        await send({"type": "http.response.body", "body": b"chunk-%d;" % i, "more_body": True})
        if q.get("block") == "1":
            time.sleep(delay)
        else:
            await asyncio.sleep(delay)
    await send({"type": "http.response.body", "body": b"end", "more_body": False})


async def start_then_wait(scope, receive, send):
    """http.response.start, then ?t= seconds before the body (an event feed
    whose first event comes later); ?cl=1 declares a Content-Length, ?raise=1
    raises instead of sending the body, ?block= seconds of loop-blocking work
    right after the start (in the same step)."""
    q = qs(scope)
    body = b"late body"
    headers = [(b"content-type", b"text/event-stream")]
    if q.get("cl"):
        headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if q.get("block"):
        time.sleep(float(q["block"]))
    if q.get("t", "2") != "0":  # t=0: the body in the same step, no wait
        await asyncio.sleep(float(q.get("t", "2")))
    if q.get("raise"):
        raise RuntimeError("start-then-wait-" + q.get("id", "x"))
    await send({"type": "http.response.body", "body": body})


async def respond_then_block(scope, receive, send):
    """The whole response, then ?t= seconds of loop-blocking work in the same
    task (an async FastAPI background task calling blocking code)."""
    await respond(send, 200, b"done")
    time.sleep(float(qs(scope).get("t", "1")))


async def watch(scope, receive, send):
    """Stream until the client leaves. A background task awaits receive()
    after the body and records what it got; a failing send() is recorded
    with its class and whether it is an OSError."""
    ident = qs(scope).get("id", "-")
    await read_body(receive)
    t0 = time.monotonic()

    async def watcher():
        msg = await receive()
        record(ident, "receive:%s:%.2f" % (msg["type"], time.monotonic() - t0))

    task = asyncio.ensure_future(watcher())
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    record(ident, "started")
    i = 0
    try:
        while time.monotonic() - t0 < MAX_STREAM_SECONDS:
            try:
                await send({"type": "http.response.body", "body": b"c%d;" % i, "more_body": True})
            except BaseException as e:  # noqa: B902 - we want to see whatever it is
                record(ident, "send-error:%s:%s" % (type(e).__name__, isinstance(e, OSError)))
                return
            i += 1
            await asyncio.sleep(0.05)
        record(ident, "timeout")
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        await asyncio.sleep(0.2)  # let the watcher record, if it is going to
        if not task.done():
            record(ident, "watcher-still-waiting")
            task.cancel()


async def late_answer(scope, receive, send):
    """Answer after ?t= seconds (the client may have left by then), then
    run "background work" as Starlette does after its response; with
    ?raise=1 fail first, and send an error page as Starlette's
    ServerErrorMiddleware does, then re-raise."""
    q = qs(scope)
    ident = q.get("id", "-")
    await asyncio.sleep(float(q.get("t", "0.5")))
    try:
        try:
            if q.get("raise") == "1":
                raise ValueError("late-answer-error-" + ident)
            await respond(send, 200, b"late")
        except ValueError:
            await respond(send, 500, b"Internal Server Error")
            raise
    except OSError as e:
        record(ident, "send-error:%s" % type(e).__name__)
        raise
    record(ident, "background-ran")


async def receive_cancel(scope, receive, send):
    """A receive() cancelled by a timeout while another one waits too: the
    other must go on waiting (and get http.disconnect once the response is
    complete), and the next receive() must wait again, not raise
    CancelledError at once."""
    await receive()  # the (empty) body
    other = asyncio.ensure_future(receive())
    await asyncio.sleep(0)
    outcome = {}
    for name in ("first", "second"):
        try:
            await asyncio.wait_for(receive(), 0.1)
            outcome[name] = "returned"
        except asyncio.TimeoutError:
            outcome[name] = "timeout"
        except asyncio.CancelledError:
            outcome[name] = "cancelled"
    outcome["other_cancelled"] = other.cancelled()
    await respond_json(send, outcome)
    if not other.cancelled():
        msg = await asyncio.wait_for(other, 5)
        record(qs(scope).get("id", "-"), "other:" + msg["type"])


async def receive_after_response(scope, receive, send):
    """A background task awaits receive() after the body; the response is then
    completed and the app waits (bounded) for that task, which must get
    http.disconnect rather than hang."""
    ident = qs(scope).get("id", "-")
    await read_body(receive)
    t0 = time.monotonic()

    async def watcher():
        try:
            msg = await asyncio.wait_for(receive(), MAX_STREAM_SECONDS)
            record(ident, "receive:%s:%.2f" % (msg["type"], time.monotonic() - t0))
        except asyncio.TimeoutError:
            record(ident, "receive-timeout")

    task = asyncio.ensure_future(watcher())
    await asyncio.sleep(0.2)
    record(ident, "responding")
    await respond(send, 200, b"done")
    # stay in the app call until the watcher got its answer (bounded)
    try:
        await asyncio.wait_for(asyncio.shield(task), 5)
    except asyncio.TimeoutError:
        record(ident, "watcher-still-waiting-5s-after-response")


async def receive_first_after_response(scope, receive, send):
    """Answers without reading the request, then calls receive() for the
    first time: the response is sent, so that is http.disconnect (the
    ASGI spec; uvicorn), not the body nobody read."""
    await respond(send, 200, b"done")
    msg = await asyncio.wait_for(receive(), 5)
    record(qs(scope).get("id", "-"), "receive:%s" % msg["type"])


async def events(scope, receive, send):
    ident = qs(scope).get("id", "")
    await respond_json(send, {"events": [e for i, e in EVENTS if i == ident]})


async def pathsend(scope, receive, send):
    """Serve ?path= with pathsend. ?cl=N declares Content-Length N; after
    send() returns, ?then=unlink deletes the file (Starlette's
    FileResponse(background=...unlink)), ?then=append:N appends N bytes;
    ?append=N appends N bytes before send() (the file grew after the app
    read its size). What send() raised is recorded (?id=)."""
    q = qs(scope)
    path = q["path"]
    headers = [(b"content-type", b"application/octet-stream")]
    if "cl" in q:
        headers.append((b"content-length", q["cl"].encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if "append" in q:
        with open(path, "ab") as f:
            f.write(b"G" * int(q["append"]))
    try:
        await send({"type": "http.response.pathsend", "path": path})
    except OSError as e:
        record(q.get("id", "-"), "pathsend-error:%s" % type(e).__name__)
        raise
    then = q.get("then", "")
    if then == "unlink":
        os.unlink(path)
    elif then.startswith("append:"):
        with open(path, "ab") as f:
            f.write(b"G" * int(then[7:]))


async def early_hint(scope, receive, send):
    if "http.response.early_hint" in scope["extensions"]:
        await send({"type": "http.response.early_hint",
                    "links": [b"</style.css>; rel=preload; as=style"]})
    await respond(send, 200, b"after the hint")


async def trailers(scope, receive, send):
    if "http.response.trailers" not in scope["extensions"]:
        await respond(send, 200, b"part1;part2", headers=[(b"x-trailers", b"unsupported")])
        return
    await send({"type": "http.response.start", "status": 200, "trailers": True,
                "headers": [(b"content-type", b"text/plain"), (b"x-trailers", b"announced")]})
    await send({"type": "http.response.body", "body": b"part1;", "more_body": True})
    await send({"type": "http.response.body", "body": b"part2", "more_body": False})
    await send({"type": "http.response.trailers",
                "headers": [(b"x-checksum", b"sha-abc123")], "more_trailers": False})


async def trailers_misused(scope, receive, send):
    """?framing=1: trailers that name framing and content fields (which a
    trailer section must not carry) beside an allowed one; ?early=1:
    trailers sent while the body still has more to come (the app's error)."""
    q = qs(scope)
    await send({"type": "http.response.start", "status": 200, "trailers": True,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"part1;", "more_body": True})
    if "early" in q:
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"early")]})
    await send({"type": "http.response.body", "body": b"part2", "more_body": False})
    await send({"type": "http.response.trailers", "headers": [
        (b"content-length", b"99"), (b"content-type", b"text/html"), (b"connection", b"close"),
        (b"x-checksum", b"sha-abc123")]})


async def typed_values(scope, receive, send):
    """The status as an http.HTTPStatus (an int subclass, as FastAPI passes
    status_code=HTTPStatus.CREATED) and the body as a bytes subclass."""
    import http

    class Body(bytes):
        pass

    await send({"type": "http.response.start", "status": http.HTTPStatus.CREATED,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": Body(b"typed")})


async def poll_disconnect(scope, receive, send):
    """Starlette's is_disconnected(): one receive() in a cancelled scope,
    after ?t= seconds of work; records what each poll said."""
    q = qs(scope)
    await asyncio.sleep(float(q.get("t", "0.5")))
    seen = []
    for _ in range(int(q.get("n", "1"))):  # ?n=: polls, 0.1 s apart, until one says disconnect
        task = asyncio.ensure_future(receive())
        await asyncio.sleep(0)  # one step: what receive() has at hand, no waiting
        if not task.done():
            task.cancel()
        seen.append(task.result()["type"] if task.done() else "pending")
        if seen[-1] == "http.disconnect":
            break
        await asyncio.sleep(0.1)
    record(q.get("id", "-"), "poll:" + ",".join(seen))
    await respond(send, 200, b"polled")


async def trailers_always(scope, receive, send):
    """Trailers sent without looking at scope["extensions"]."""
    await send({"type": "http.response.start", "status": 200, "trailers": True,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"part1;part2"})
    await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"sha-abc123")]})
    await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"late")]})


async def bigstream(scope, receive, send):
    """?mb= MiB of deterministic bytes in 64 KiB more_body chunks; the
    sha256 is in a header so the client can check what it got."""
    mb = int(qs(scope).get("mb", "20"))
    block = bytes(range(256)) * 256  # 64 KiB
    n = mb * 16
    h = hashlib.sha256()
    for i in range(n):
        h.update(block[i % 256:] + block[:i % 256])
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/octet-stream"),
                            (b"x-sha256", h.hexdigest().encode())]})
    for i in range(n):
        await send({"type": "http.response.body", "body": block[i % 256:] + block[:i % 256], "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


# /firehose progress by ?id=: bytes the app's send()s have returned for.
FIREHOSE = {}


async def firehose(scope, receive, send):
    """?total= bytes in ?size=-byte more_body chunks, sent in a tight loop
    (no await but send), recording progress under ?id= for /firehose-progress:
    shows how many small sends Go coalesces, and what it holds for a client
    that does not read."""
    q = qs(scope)
    size, total, ident = int(q.get("size", "10")), int(q.get("total", "10000")), q.get("id", "")
    chunk = b"x" * (size - 1) + b"\n"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    FIREHOSE[ident] = 0
    for _ in range(total // size):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
        FIREHOSE[ident] += size
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def firehose_progress(scope, receive, send):
    await respond(send, 200, str(FIREHOSE.get(qs(scope).get("id", ""), -1)).encode())


# One bytes object every /shared-block chunk is: the bridge passes large
# chunks to Go by reference, so its refcount shows whether each reference
# was given back (see test_zero_copy_*).
SHARED_BLOCK = bytes(range(256)) * 256  # 64 KiB


async def shared_block(scope, receive, send):
    """?n= chunks of SHARED_BLOCK with more_body, then a last chunk: empty,
    or SHARED_BLOCK itself with ?last=1. ?delay= seconds between chunks."""
    q = qs(scope)
    n, delay = int(q.get("n", "16")), float(q.get("delay", "0"))
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/octet-stream")]})
    started = time.monotonic()
    for _ in range(n):
        await send({"type": "http.response.body", "body": SHARED_BLOCK, "more_body": True})
        if delay:
            await asyncio.sleep(delay)
        if time.monotonic() - started > MAX_STREAM_SECONDS:
            break
    last = SHARED_BLOCK if q.get("last") == "1" else b""
    await send({"type": "http.response.body", "body": last, "more_body": False})


async def shared_refs(scope, receive, send):
    # A request that ended in ClientDisconnected leaves a cycle (exception,
    # traceback, send()'s frame and its message) holding the block until
    # the collector runs.
    gc.collect()
    await respond_json(send, {"refs": sys.getrefcount(SHARED_BLOCK)})


def malloc_in_use():
    """Bytes the C allocator has handed out and not got back (glibc's
    mallinfo2: heap blocks in use plus mmapped ones), or None elsewhere.
    Unlike RSS it counts a buffer that was leaked before being written."""
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

    f = getattr(ctypes.CDLL(None), "mallinfo2", None)
    if f is None:
        return None
    f.restype = MallInfo2
    m = f()
    return m.uordblks + m.hblkhd


async def malloc_stats(scope, receive, send):
    gc.collect()
    await respond_json(send, {"in_use": malloc_in_use()})


async def status(scope, receive, send):
    q = qs(scope)
    code = int(q.get("code", "200"))
    headers = [(b"x-status", str(code).encode())]
    if "cl" in q:  # Django puts "Content-Length: 0" on every 204
        headers.append((b"content-length", q["cl"].encode()))
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def sleep(scope, receive, send):
    t = float(qs(scope).get("t", "1"))
    await asyncio.sleep(t)
    await respond(send, 200, b"slept")


async def loop_info(scope, receive, send):
    loop = asyncio.get_running_loop()
    await respond_json(send, {"module": type(loop).__module__, "class": type(loop).__name__,
                              "uvloop_imported": "uvloop" in sys.modules})


REQUEST_VAR = contextvars.ContextVar("request_var", default=None)


async def task_context(scope, receive, send):
    """Whether the app runs as the current task (anyio needs it from the
    first line), and what a ContextVar held before this request set it (a
    request must never see another request's value)."""
    seen = REQUEST_VAR.get()
    REQUEST_VAR.set(qs(scope).get("id", "?"))
    task = asyncio.current_task()
    await respond_json(send, {"task": task is not None, "seen": seen,
                              "task_done": task.done() if task else None})


async def state_mutate(scope, receive, send):
    """Mutate this request's state copy, report it before and after."""
    before = dict(scope["state"])
    scope["state"]["counter"] = scope["state"].get("counter", 0) + 1
    scope["state"]["mutated_by"] = qs(scope).get("id", "?")
    scope["state"].pop("startup", None)
    await respond_json(send, {"before": describe(before), "after": describe(dict(scope["state"]))})


async def headers_view(scope, receive, send):
    await respond_json(send, {"headers": describe(scope["headers"])})


async def response_headers(scope, receive, send):
    """Duplicate response headers and a mixed-case name."""
    await send({"type": "http.response.start", "status": 201,
                "headers": [(b"content-type", b"text/plain"), (b"x-multi", b"one"),
                            (b"X-Multi", b"two"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]})
    await send({"type": "http.response.body", "body": b"created"})


async def set_headers(scope, receive, send):
    """Exactly the response headers given as ?h=Name:Value (repeatable), and
    an HTML-looking body in two chunks (so no length is known up front)."""
    pairs = parse_qs(scope["query_string"].decode("latin-1"), keep_blank_values=True).get("h", [])
    headers = [tuple(x.encode("latin-1") for x in p.split(":", 1)) for p in pairs]
    body = b"<!DOCTYPE html><html><body>no type was set</body></html>"
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body[:20], "more_body": True})
    await send({"type": "http.response.body", "body": body[20:]})


async def lifespan_log(scope, receive, send):
    await respond_json(send, {"log": LIFESPAN_LOG, "asgi": LIFESPAN_ASGI})


# -- errors ---------------------------------------------------------------

async def err_before_start(scope, receive, send):
    raise RuntimeError("asgi-before-start-" + qs(scope).get("id", "x"))


async def err_after_start(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"partial-body;", "more_body": True})
    raise RuntimeError("asgi-after-start-" + qs(scope).get("id", "x"))


async def err_after_start_cl(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"100")]})
    await send({"type": "http.response.body", "body": b"only-ten!!", "more_body": True})
    raise RuntimeError("asgi-after-start-cl-" + qs(scope).get("id", "x"))


async def cl_overrun(scope, receive, send):
    """Content-Length 5 and a longer body (or, with ?short=1, a shorter
    one): in one chunk, or streamed (?stream=1). ?catch=1 reports what
    send() raised as the body."""
    q = qs(scope)
    body = b"012" if q.get("short") == "1" else b"0123456789"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"5")]})
    try:
        if q.get("stream") == "1":
            await send({"type": "http.response.body", "body": body[:2], "more_body": True})
            await send({"type": "http.response.body", "body": body[2:]})
        else:
            await send({"type": "http.response.body", "body": body})
    except RuntimeError as e:
        if q.get("catch") != "1":
            raise
        await send({"type": "http.response.body", "body": str(e)[:5].encode()})


async def err_no_response(scope, receive, send):
    return None


async def err_bad_type(scope, receive, send):
    await send({"type": "http.response.bogus-type", "status": 200})


async def err_str_body(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": "a str, not bytes"})


async def err_int_header(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(1234, b"value")]})
    await send({"type": "http.response.body", "body": b"x"})


async def err_status_600(scope, receive, send):
    await send({"type": "http.response.start", "status": 600, "headers": []})
    await send({"type": "http.response.body", "body": b"x"})


async def err_str_status(scope, receive, send):
    await send({"type": "http.response.start", "status": "200", "headers": []})
    await send({"type": "http.response.body", "body": b"x"})


async def err_body_before_start(scope, receive, send):
    await send({"type": "http.response.body", "body": b"x"})


ROUTES = {
    "/hello": hello,
    "/echo": echo,
    "/echo-streamed": echo_streamed,
    "/upload": upload,
    "/body-events": body_events,
    "/stream": stream,
    "/respond-then-block": respond_then_block,
    "/watch": watch,
    "/events": events,
    "/late-answer": late_answer,
    "/receive-cancel": receive_cancel,
    "/receive-after-response": receive_after_response,
    "/receive-first-after-response": receive_first_after_response,
    "/pathsend": pathsend,
    "/early-hint": early_hint,
    "/trailers": trailers,
    "/trailers-always": trailers_always,
    "/trailers-misused": trailers_misused,
    "/typed-values": typed_values,
    "/poll-disconnect": poll_disconnect,
    "/sleep": sleep,
    "/bigstream": bigstream,
    "/firehose": firehose,
    "/firehose-progress": firehose_progress,
    "/shared-block": shared_block,
    "/shared-refs": shared_refs,
    "/malloc": malloc_stats,
    "/status": status,
    "/loop": loop_info,
    "/task_context": task_context,
    "/state/mutate": state_mutate,
    "/headers": headers_view,
    "/response-headers": response_headers,
    "/set-headers": set_headers,
    "/lifespan-log": lifespan_log,
    "/start-then-wait": start_then_wait,
    "/error/before-start": err_before_start,
    "/error/after-start": err_after_start,
    "/error/after-start-cl": err_after_start_cl,
    "/error/no-response": err_no_response,
    "/cl-overrun": cl_overrun,
    "/error/bad-type": err_bad_type,
    "/error/str-body": err_str_body,
    "/error/int-header": err_int_header,
    "/error/str-status": err_str_status,
    "/error/status-600": err_status_600,
    "/error/body-before-start": err_body_before_start,
}


async def lifespan(scope, receive, send):
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            LIFESPAN_LOG.append("startup")
            LIFESPAN_ASGI.update(scope["asgi"])
            if "state" in scope:
                scope["state"]["startup"] = "raw-startup-done"
                scope["state"]["counter"] = 0
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            LIFESPAN_LOG.append("shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan(scope, receive, send)
        return
    assert scope["type"] == "http", scope["type"]
    handler = ROUTES.get(scope["path"][len(scope["root_path"]):] if scope["path"].startswith(scope["root_path"]) else scope["path"], scope_view)
    await handler(scope, receive, send)
