"""send(): response start/body, streaming, pathsend, early hints, trailers."""

import hashlib
import http.client
import os
import socket
import time
import uuid
from urllib.parse import urlencode

import httpx
import pytest

from conftest import dechunk, h2_frames, held_back_at, raw_request, read_first_chunk_and_close, wait_until


def read_events(server, ident):
    r = httpx.get(server.url("/events"), params={"id": ident}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["events"]


# ---------------------------------------------------------------- start/body


def test_hello(asgi_server):
    r = httpx.get(asgi_server.url("/hello"), timeout=10)
    assert r.status_code == 200
    assert r.text == "hello asgi"
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.headers["content-length"] == "10"


def test_headers_of_an_unsized_response_go_out_before_its_body(asgi_server):
    # An event feed: the client (EventSource's open) sees the headers before
    # the first event, as through reverse_proxy to uvicorn.
    s = socket.create_connection(("127.0.0.1", asgi_server.port), timeout=10)
    try:
        s.sendall(b"GET /start-then-wait?t=3 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        s.settimeout(1.5)
        head = b""
        while b"\r\n\r\n" not in head:
            try:
                c = s.recv(4096)
            except socket.timeout:
                raise AssertionError(f"no headers 1.5 s into a 3 s wait for the body: {head!r}") from None
            assert c, head
            head += c
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"text/event-stream" in head.lower()
        s.settimeout(10)
        rest = head
        while c:
            c = s.recv(4096)
            rest += c
        assert b"late body" in rest
    finally:
        s.close()


def test_an_unsized_start_sent_with_its_body_is_one_sized_response(asgi_server):
    resp = raw_request(asgi_server.port, b"GET /start-then-wait?t=0 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert resp.status == 200
    assert resp.header("content-length") == "9" and resp.header("transfer-encoding") is None
    assert resp.body == b"late body"


@pytest.mark.parametrize("then", ["body", "raise"])
def test_an_unsized_start_waits_out_a_step_that_blocks_the_loop(asgi_server, then):
    # The step goes on for 50 ms after the start (the late flush fires after
    # 1 ms): the start still waits for the step's end, so a body that follows
    # makes one sized response, and a failure a 500.
    q = "t=0&block=0.05" + ("&raise=1" if then == "raise" else "")
    resp = raw_request(asgi_server.port, f"GET /start-then-wait?{q} HTTP/1.1\r\nHost: h\r\n"
                                         f"Connection: close\r\n\r\n".encode())
    if then == "raise":
        assert resp.status == 500, resp.raw[:300]
    else:
        assert resp.status == 200
        assert resp.header("content-length") == "9" and resp.header("transfer-encoding") is None
        assert resp.body == b"late body"


def test_a_sized_start_is_held_so_a_later_failure_is_a_500(asgi_server):
    r = httpx.get(asgi_server.url("/start-then-wait?cl=1&t=0.3&raise=1"), timeout=10)
    assert r.status_code == 500


def test_status_and_body_may_be_int_and_bytes_subclasses(asgi_server):
    """The spec's "int" status includes an http.HTTPStatus (FastAPI's
    JSONResponse(status_code=HTTPStatus.CREATED)), its "bytes" body a bytes
    subclass, as uvicorn takes them; both were a 500."""
    r = httpx.get(asgi_server.url("/typed-values"), timeout=10)
    assert (r.status_code, r.content) == (201, b"typed")


def test_status_and_duplicate_response_headers(asgi_server):
    resp = raw_request(asgi_server.port, b"GET /response-headers HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert resp.status == 201, resp.raw[:500]
    assert resp.header_list("x-multi") == ["one", "two"]
    assert resp.header_list("set-cookie") == ["a=1", "b=2"]
    assert resp.body == b"created"


def test_keepalive_many_requests(asgi_server):
    with httpx.Client(timeout=10) as c:
        for i in range(200):
            r = c.post(asgi_server.url(f"/echo?i={i}"), content=f"req-{i}".encode())
            assert r.status_code == 200 and r.text == f"req-{i}"


# ---------------------------------------------------------------- streaming


def read_stream_with_times(port, path, timeout=15.0):
    """Raw HTTP/1.1 GET; returns (status line + headers, [(t, bytes received)])."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    t0 = time.monotonic()
    got = []
    try:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".encode())
        deadline = t0 + timeout
        while True:
            assert time.monotonic() < deadline, "stream did not finish in time"
            s.settimeout(max(0.05, deadline - time.monotonic()))
            c = s.recv(65536)
            if not c:
                break
            got.append((time.monotonic() - t0, c))
    finally:
        s.close()
    return got


def test_streaming_chunks_arrive_as_sent(asgi_server):
    n, delay = 5, 0.3
    got = read_stream_with_times(asgi_server.port, f"/stream?n={n}&delay={delay}")
    data = b"".join(c for _, c in got)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"transfer-encoding: chunked" in head.lower()
    # each more_body send is its own HTTP chunk
    expected = [b"chunk-%d;" % i for i in range(n)] + [b"end"]
    chunks = dechunk(body)
    assert b"".join(chunks) == b"".join(expected)
    assert chunks[:n] == expected[:n], chunks
    # timing: the first chunk well before the end
    t_first = next(t for t, c in got if b"chunk-0;" in b"".join(x for tt, x in got if tt <= t))
    t_last = got[-1][0]
    assert t_last >= n * delay * 0.9
    assert t_first < t_last - 0.8, f"first chunk at {t_first:.2f}s, end at {t_last:.2f}s: not streamed"


def test_chunks_leave_when_the_app_blocks_the_loop(asgi_server):
    """ASGI: data given to send() is flushed before send() returns. An app
    that then blocks the loop (time.sleep) must not hold it back."""
    got = read_stream_with_times(asgi_server.port, "/stream?n=3&delay=0.6&block=1")
    first = next(t for t, c in got if b"chunk-0;" in c)
    assert first < 0.4, f"first chunk at {first:.2f}s, behind a 0.6s block"
    assert got[-1][0] >= 1.6


def test_small_chunks_sent_together_share_writes(asgi_server):
    """1,000 ten-byte sends in a row (a template or CSV streamed in small
    pieces) reach the client whole and in order, coalesced: a write and a
    flush each would cost a syscall and a chunk header each (the old
    behaviour, 1,000 chunks on the wire)."""
    got = read_stream_with_times(asgi_server.port, "/firehose?size=10&total=10000")
    head, _, body = b"".join(c for _, c in got).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    chunks = dechunk(body)
    assert b"".join(chunks) == (b"x" * 9 + b"\n") * 1000
    assert len(chunks) <= 100, f"{len(chunks)} chunks on the wire for 1,000 sends made together"


def test_stream_to_a_client_that_does_not_read_is_bounded(asgi_server):
    """send() stops returning once what waits for a client that does not
    read is the kernel's socket buffers plus a bounded window: the app is
    slowed, not buffered without limit (256 MiB of 4 KiB sends)."""
    ident = uuid.uuid4().hex[:12]
    sent = held_back_at(asgi_server, f"/firehose?size=4096&total={256 << 20}&id={ident}", ident)
    assert sent < 32 << 20, f"{sent} bytes sent to a client that reads nothing"


def test_response_leaves_before_blocking_background_work(asgi_server):
    """Starlette runs background tasks in the request's task after the last
    send(): a blocking one must not delay the response (it does not under
    uvicorn)."""
    got = read_stream_with_times(asgi_server.port, "/respond-then-block?t=1.5")
    data = b"".join(c for _, c in got)
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"\r\n\r\ndone"), data
    assert got[-1][0] < 0.7, f"response complete after {got[-1][0]:.2f}s, behind a 1.5s block"


def test_streaming_with_httpx_h2c(asgi_server):
    pytest.importorskip("h2", reason="h2 package (httpx[http2]) not installed")
    with httpx.Client(http1=False, http2=True, timeout=15) as c:
        t0 = time.monotonic()
        with c.stream("GET", asgi_server.url("/stream?n=4&delay=0.3")) as r:
            assert r.http_version == "HTTP/2"
            first, buf = None, b""
            for piece in r.iter_raw():
                buf += piece
                if first is None and b"chunk-0;" in buf:
                    first = time.monotonic() - t0
        total = time.monotonic() - t0
    assert buf == b"chunk-0;chunk-1;chunk-2;chunk-3;end"
    assert first is not None and first < total - 0.6, (first, total)


# ---------------------------------------------------------------- client gone


def test_client_half_close_is_499_not_an_empty_200(asgi_server):
    """Go takes a client's half-close for its leaving. What it then reads must
    not be a made-up empty success: a 499 (client closed request), which
    Caddy's reverse_proxy records too."""
    s = socket.create_connection(("127.0.0.1", asgi_server.port), timeout=10)
    try:
        s.sendall(b"GET /sleep?t=0.5 HTTP/1.1\r\nHost: h\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    finally:
        s.close()
    assert data.startswith(b"HTTP/1.1 499"), data[:200]


def test_send_after_client_left_raises_oserror(asgi_server):
    ident = uuid.uuid4().hex[:12]
    read_first_chunk_and_close(asgi_server.port, f"/watch?id={ident}", b"c0;")

    def seen():
        evs = read_events(asgi_server, ident)
        return evs if any(e.startswith("send-error:") for e in evs) else None

    evs = wait_until(seen, 5.0, interval=0.1, message="send() to fail after the client left")
    err = next(e for e in evs if e.startswith("send-error:"))
    cls, is_oserror = err.split(":")[1:3]
    assert is_oserror == "True", f"send() raised {cls}, which is not an OSError subclass"
    assert "timeout" not in evs


def _leave_early(port, target, after=0.1, body=None):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        if body is None:
            s.sendall(f"GET {target} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
        else:
            s.sendall(f"POST {target} HTTP/1.1\r\nHost: h\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        time.sleep(after)


@pytest.mark.parametrize("body", [None, b"b" * 100], ids=["get", "small-body"])
def test_a_client_that_left_is_seen_by_one_receive_that_does_not_wait(asgi_server, body):
    """Starlette's request.is_disconnected() makes one receive() that must
    not wait (in a cancelled scope). Once the client has left it must say
    http.disconnect, as under uvicorn, even with the request's body still
    unread: before, it took the pending body (or the empty one of a GET)
    and said the client was there."""
    ident = uuid.uuid4().hex[:12]
    _leave_early(asgi_server.port, f"/poll-disconnect?id={ident}&t=0.5", body=body)
    evs = wait_until(lambda: read_events(asgi_server, ident), 5.0, interval=0.1,
                     message="the app to poll after its client left")
    assert evs == ["poll:http.disconnect"], evs


def test_a_client_that_left_a_large_body_unread_is_seen_by_the_next_poll(asgi_server):
    """A body of 16 KiB or more is read only when the app asks: Go learns
    the client left by reading it, so the first poll (which asks) cannot
    know yet, and the body's chunks it reads meanwhile may come first; but
    once Go has seen the client go, the next poll says so."""
    ident = uuid.uuid4().hex[:12]
    _leave_early(asgi_server.port, f"/poll-disconnect?id={ident}&t=0.5&n=5", body=b"b" * 20000)
    evs = wait_until(lambda: read_events(asgi_server, ident), 5.0, interval=0.1,
                     message="the app to poll after its client left")
    assert len(evs) == 1 and evs[0].endswith(",http.disconnect"), evs


def test_response_after_client_left_is_dropped_quietly(asgi_server):
    """send() of a response's start and last body after the client left
    returns quietly, as under uvicorn: raising there would only undo work
    the app has done (Starlette then skips its background tasks, FastAPI's
    yield dependencies roll back). Only a chunk with more to come raises
    (test_send_after_client_left_raises_oserror)."""
    ident = uuid.uuid4().hex[:12]
    _leave_early(asgi_server.port, f"/late-answer?id={ident}&t=0.5")
    evs = wait_until(lambda: read_events(asgi_server, ident), 5.0, interval=0.1,
                     message="the app to finish after its client left")
    assert evs == ["background-ran"], evs


def test_app_error_after_client_left_is_logged(asgi_server):
    """An app that fails after its client left (and whose framework then
    sends an error page to nobody) gets its traceback logged, as under
    uvicorn: the departure does not hide a real error."""
    ident = uuid.uuid4().hex[:12]
    mark = asgi_server.log_mark()
    _leave_early(asgi_server.port, f"/late-answer?id={ident}&t=0.5&raise=1")
    log = asgi_server.wait_for_log(f"late-answer-error-{ident}", since=mark)
    assert "ValueError" in log and "Traceback" in log, log[-2000:]
    assert read_events(asgi_server, ident) == []


# ---------------------------------------------------------------- pathsend


def test_pathsend_serves_file(asgi_server, tmp_path):
    data = os.urandom(5 << 20)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    r = httpx.get(asgi_server.url("/pathsend"), params={"path": str(path)}, timeout=30)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/octet-stream"
    assert len(r.content) == len(data)
    assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(data).hexdigest()
    assert r.headers.get("content-length") in (None, str(len(data)))


def test_pathsend_small_file_h2c(asgi_server, tmp_path):
    pytest.importorskip("h2", reason="h2 package (httpx[http2]) not installed")
    path = tmp_path / "small.txt"
    path.write_bytes(b"small file \xe2\x98\x83\n")
    with httpx.Client(http1=False, http2=True, timeout=15) as c:
        r = c.get(asgi_server.url("/pathsend"), params={"path": str(path)})
    assert r.status_code == 200
    assert r.content == b"small file \xe2\x98\x83\n"


def test_pathsend_file_deleted_as_send_returns(asgi_server, tmp_path):
    """Starlette's FileResponse(path, background=BackgroundTask(os.unlink,
    path)) deletes the file as soon as send() returns: the driver opened it
    in send(), so the whole file is still served (as under uvicorn, where
    Starlette reads it itself before the task runs)."""
    for i in range(5):
        data = os.urandom(300_000 + i)
        path = tmp_path / f"gone{i}.bin"
        path.write_bytes(data)
        r = httpx.get(asgi_server.url("/pathsend"), params={"path": str(path), "then": "unlink"}, timeout=30)
        assert r.status_code == 200 and r.content == data
        assert not path.exists()


@pytest.mark.parametrize("what,error", [("missing", "FileNotFoundError"), ("directory", "IsADirectoryError")])
def test_pathsend_of_what_cannot_be_sent_raises_in_send(asgi_server, tmp_path, what, error):
    """send() raises (the app sees why) while the response can still be a
    clean 500, and the traceback is logged."""
    ident = uuid.uuid4().hex[:12]
    path = tmp_path / "nothing-here" if what == "missing" else tmp_path
    mark = asgi_server.log_mark()
    r = httpx.get(asgi_server.url("/pathsend"), params={"path": str(path), "id": ident}, timeout=10)
    assert r.status_code == 500
    assert read_events(asgi_server, ident) == [f"pathsend-error:{error}"]
    asgi_server.wait_for_log(error, "pathsend", since=mark)
    assert httpx.get(asgi_server.url("/hello"), timeout=10).text == "hello asgi"


@pytest.mark.parametrize("when", ["append", "then"], ids=["before-send", "after-send"])
def test_pathsend_file_grown_after_its_length_was_taken(asgi_server, tmp_path, when):
    """The app declares the size it read (as Starlette does), then the file
    grows: exactly that many bytes go out, so the next response on the
    connection is that response, not the file's tail."""
    path = tmp_path / "log.txt"
    path.write_bytes(b"F" * 50_000)
    grow = {"append": "50000"} if when == "append" else {"then": "append:50000"}
    conn = http.client.HTTPConnection("127.0.0.1", asgi_server.port, timeout=10)
    try:
        conn.request("GET", "/pathsend?" + urlencode({"path": str(path), "cl": "50000", **grow}))
        r = conn.getresponse()
        assert r.status == 200 and r.read() == b"F" * 50_000
        conn.request("GET", "/hello")
        r = conn.getresponse()
        assert r.status == 200 and r.read() == b"hello asgi"
    finally:
        conn.close()


def test_pathsend_file_shorter_than_content_length_is_cut_off(asgi_server, tmp_path):
    """A declared length the file does not have: the client sees truncation
    (HTTP/2: a reset stream), never a short response that looks whole."""
    path = tmp_path / "short.bin"
    path.write_bytes(b"s" * 1000)
    target = "/pathsend?" + urlencode({"path": str(path), "cl": "5000"})
    mark = asgi_server.log_mark()
    resp = raw_request(asgi_server.port, f"GET {target} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".encode())
    assert resp.status == 200 and resp.body == b"s" * 1000 and not resp.complete
    frames = [f for f in h2_frames(asgi_server.port, target) if f.stream == 1]
    assert not any(f.end_stream for f in frames) and frames[-1].type == "RST_STREAM", frames
    asgi_server.wait_for_log("pathsend", "cut off", since=mark)


# ---------------------------------------------------------------- early hints


def test_early_hint_precedes_final_response(asgi_server):
    resp = raw_request(asgi_server.port, b"GET /early-hint HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    raw = resp.raw
    assert raw.startswith(b"HTTP/1.1 103"), raw[:300]
    hint, _, rest = raw.partition(b"\r\n\r\n")
    assert b"\r\nlink: </style.css>; rel=preload; as=style" in hint.lower(), hint
    assert rest.startswith(b"HTTP/1.1 200"), rest[:300]
    final_head, _, final_body = rest.partition(b"\r\n\r\n")
    assert b"link:" not in final_head.lower(), "the hint's Link header leaked into the final response"
    assert final_body.endswith(b"after the hint")


def test_early_hint_not_offered_to_http_1_0(asgi_server):
    resp = raw_request(asgi_server.port, b"GET /early-hint HTTP/1.0\r\nHost: h\r\n\r\n")
    assert resp.raw.startswith(b"HTTP/1.0 200"), resp.raw[:300]
    assert resp.body == b"after the hint"


def test_early_hint_httpx_final_response(asgi_server):
    r = httpx.get(asgi_server.url("/early-hint"), timeout=10)
    assert r.status_code == 200
    assert r.text == "after the hint"


# ---------------------------------------------------------------- trailers


def test_trailers_with_te_trailers(asgi_server):
    resp = raw_request(asgi_server.port, b"GET /trailers HTTP/1.1\r\nHost: h\r\nTE: trailers\r\n"
                                         b"Connection: close\r\n\r\n")
    assert resp.status == 200, resp.raw[:500]
    assert resp.chunked, resp.raw[:500]
    assert resp.complete
    assert resp.body == b"part1;part2"
    assert resp.header("x-trailers") == "announced"
    # after the last chunk: the trailer field, then the blank line
    tail = resp.after_headers[resp.after_headers.rfind(b"\r\n0\r\n") + 2:]
    assert tail.lower() == b"0\r\nx-checksum: sha-abc123\r\n\r\n", tail


def test_no_trailers_without_te(asgi_server):
    resp = raw_request(asgi_server.port, b"GET /trailers HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert resp.status == 200
    assert resp.body == b"part1;part2"
    assert resp.header("x-trailers") == "unsupported"
    assert b"x-checksum" not in resp.raw.lower()


def test_trailers_the_client_did_not_ask_for_are_dropped(asgi_server):
    """An app that sends trailers without checking the extension: they are
    dropped, as an HTTP/1.1 server drops trailers a client cannot take; the
    response is whole and nothing is logged. A second trailers message after
    the last one is the app's error."""
    mark = asgi_server.log_mark()
    resp = raw_request(asgi_server.port, b"GET /trailers-always HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert resp.status == 200 and resp.complete
    assert resp.body == b"part1;part2"
    assert b"x-checksum" not in resp.raw.lower()
    log = asgi_server.wait_for_log("http.response.trailers sent after the last one", since=mark)
    # (the raising source line, which Python 3.13 shows whole, names both)
    assert "Error: http.response.trailers not announced" not in log


def test_framing_fields_are_not_sent_as_trailers(asgi_server):
    """RFC 9110 6.5.1: a trailer section must not carry framing, routing or
    content fields (a Content-Length there could be merged by a client into
    the headers); the app's are dropped, its other trailers go out."""
    resp = raw_request(asgi_server.port, b"GET /trailers-misused HTTP/1.1\r\nHost: h\r\nTE: trailers\r\n"
                                         b"Connection: close\r\n\r\n")
    assert resp.status == 200 and resp.complete, resp.raw[:500]
    assert resp.body == b"part1;part2"
    tail = resp.after_headers[resp.after_headers.rfind(b"\r\n0\r\n") + 2:]
    assert tail.lower() == b"0\r\nx-checksum: sha-abc123\r\n\r\n", tail


def test_trailers_before_the_last_body_chunk_are_the_apps_error(asgi_server):
    """Trailers come after the body (ASGI: "after the last body message");
    sent while more body is due, send() raises and the error is logged; the
    client gets no trailers it could take for the real ones."""
    mark = asgi_server.log_mark()
    resp = raw_request(asgi_server.port, b"GET /trailers-misused?early=1 HTTP/1.1\r\nHost: h\r\n"
                                         b"TE: trailers\r\nConnection: close\r\n\r\n")
    assert b"early" not in resp.raw
    assert not resp.complete or resp.status == 500, resp.raw[:500]
    asgi_server.wait_for_log("http.response.trailers sent before the body's last chunk", since=mark)


def test_trailers_over_h2c(asgi_server):
    """HTTP/2 carries trailers as a final HEADERS frame; check the body and
    that the request succeeds (httpx does not expose h2 trailers)."""
    pytest.importorskip("h2", reason="h2 package (httpx[http2]) not installed")
    with httpx.Client(http1=False, http2=True, timeout=15) as c:
        r = c.get(asgi_server.url("/trailers"), headers={"TE": "trailers"})
    assert r.status_code == 200
    assert r.headers["x-trailers"] == "announced"
    assert r.content == b"part1;part2"


# ---------------------------------------------------------------- misc


def test_large_streamed_response(asgi_server):
    h = hashlib.sha256()
    size = 0
    with httpx.stream("GET", asgi_server.url("/bigstream?mb=20"), timeout=60) as r:
        assert r.status_code == 200
        expected = r.headers["x-sha256"]
        for piece in r.iter_raw():
            h.update(piece)
            size += len(piece)
    assert size == 20 << 20
    assert h.hexdigest() == expected


def test_large_streamed_response_slow_reader(asgi_server):
    """A client that reads slowly gets every byte (backpressure, no loss)."""
    h = hashlib.sha256()
    size = 0
    with httpx.stream("GET", asgi_server.url("/bigstream?mb=4"), timeout=60) as r:
        expected = r.headers["x-sha256"]
        for i, piece in enumerate(r.iter_raw(chunk_size=256 << 10)):
            h.update(piece)
            size += len(piece)
            if i < 8:
                time.sleep(0.05)
    assert size == 4 << 20
    assert h.hexdigest() == expected


SHARED_BLOCK = bytes(range(256)) * 256  # the app's /shared-block chunk


def shared_refs(server):
    return httpx.get(server.url("/shared-refs"), timeout=10).json()["refs"]


@pytest.mark.parametrize("h2", [False, True], ids=["http1", "h2c"])
def test_zero_copy_chunks_arrive_intact_and_are_released(asgi_server, h2):
    """Large bytes chunks go to Go by reference, not copied: every byte
    arrives, and every reference is given back once written (a leak leaves
    the refcount high, a double release low)."""
    if h2:
        pytest.importorskip("h2", reason="h2 package (httpx[http2]) not installed")
    base = shared_refs(asgi_server)
    with httpx.Client(http1=not h2, http2=h2, timeout=30) as c:
        r = c.get(asgi_server.url("/shared-block?n=64&last=1"))
    assert r.status_code == 200
    assert r.http_version == ("HTTP/2" if h2 else "HTTP/1.1")
    assert r.content == SHARED_BLOCK * 65
    wait_until(lambda: shared_refs(asgi_server) == base, 5, message="every chunk reference given back")


def test_zero_copy_references_released_when_client_leaves(asgi_server):
    """Chunks queued for a client that left are never written: their
    references still go back, however far the response had got."""
    base = shared_refs(asgi_server)
    for delay in ("0", "0", "0.001", "0.01"):
        read_first_chunk_and_close(asgi_server.port, f"/shared-block?n=100000&delay={delay}",
                                   marker=SHARED_BLOCK[:64])
    wait_until(lambda: shared_refs(asgi_server) == base, 10, message="references of unsent chunks given back")
    r = httpx.get(asgi_server.url("/shared-block?n=3"), timeout=10)
    assert r.content == SHARED_BLOCK * 3


def test_head_request_has_no_body(asgi_server):
    resp = raw_request(asgi_server.port, b"HEAD /hello HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
                       head_request=True)
    assert resp.status == 200
    assert resp.header("content-length") == "10"
    assert resp.after_headers == b""


@pytest.mark.parametrize("code", [204, 304, 404, 418, 503])
def test_status_codes(asgi_server, code):
    r = httpx.get(asgi_server.url(f"/status?code={code}"), timeout=10)
    assert r.status_code == code
    assert r.headers["x-status"] == str(code)
    assert r.content == b""


def test_unread_request_body_does_not_break_keepalive(asgi_server):
    with httpx.Client(timeout=15) as c:
        r = c.post(asgi_server.url("/hello"), content=os.urandom(3 << 20))
        assert r.status_code == 200 and r.text == "hello asgi"
        r = c.post(asgi_server.url("/echo"), content=b"second")
        assert r.status_code == 200 and r.content == b"second"
