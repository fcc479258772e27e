"""Response side of the bridge: start_response, write(), iterables, close(),
file_wrapper, bodiless statuses, Content-Length and header validation."""

import hashlib
import os
import random
import socket
import uuid

import httpx
import pytest

from conftest import dechunk, h2_frames, held_back_at, parse_raw_response, read_events, wait_until


# /mixed-chunks in apps/raw_wsgi: small and large chunks alternating.
MIXED_CHUNKS = b"".join(bytes([65 + i % 26]) * (7 if i % 3 else 300_000) for i in range(30))


def req(path: str, method: str = "GET", extra: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n".encode()


def assert_still_serving(server):
    r = httpx.get(server.url("/hello"), timeout=10)
    assert r.status_code == 200
    assert r.text == "hello world"


# ---------------------------------------------------------------- basic


def test_hello(raw_server):
    r = httpx.get(raw_server.url("/hello"), timeout=10)
    assert r.status_code == 200
    assert r.text == "hello world"
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.headers["content-length"] == "11"


def test_write_callable(raw_server):
    r = httpx.get(raw_server.url("/write"), timeout=10)
    assert r.status_code == 200
    assert r.text == "part1-part2-part3"


def test_write_callable_only(raw_server):
    r = httpx.get(raw_server.url("/write_only"), timeout=10)
    assert r.status_code == 200
    assert r.text == "only-write"


def test_multiple_headers_preserved(raw_server):
    resp = raw_server.raw(req("/multi_headers"))
    assert resp.status == 200
    assert resp.header_list("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert resp.header_list("X-Dup") == ["one", "two"]
    assert resp.body == b"ok"


@pytest.mark.parametrize("code,reason", [(201, "Created"), (404, "Not Found"), (418, "I'm a teapot")])
def test_status_codes(raw_server, code, reason):
    resp = raw_server.raw(req(f"/status?code={code}&body=1"))
    assert resp.status == code
    assert resp.header("X-Status-Test") == str(code)
    assert resp.body == b"this body must not be sent"  # a normal status keeps its body


def test_large_streamed_response(raw_server):
    size = 8 * 1024 * 1024 + 123
    r = httpx.get(raw_server.url(f"/big?size={size}"), timeout=60)
    assert r.status_code == 200
    block = bytes(range(256)) * 256
    expected = (block * (size // len(block) + 1))[:size]
    assert len(r.content) == size
    assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(expected).hexdigest()


# ---------------------------------------------------------------- empty yields / exc_info


def test_empty_strings_before_body(raw_server):
    r = httpx.get(raw_server.url("/empty_yields"), timeout=10)
    assert r.status_code == 200
    assert r.text == "body-end"


def test_start_response_exc_info_before_body_replaces_headers(raw_server):
    r = httpx.get(raw_server.url("/exc_info_before"), timeout=10)
    assert r.status_code == 503
    assert r.headers.get("x-replaced") == "yes"
    assert "x-before" not in r.headers
    assert r.text == "replaced body"


def test_exc_info_after_empty_yields_still_replaces(raw_server):
    """Headers are not sent until the first non-empty chunk (PEP 3333)."""
    r = httpx.get(raw_server.url("/empty_then_replace"), timeout=10)
    assert r.status_code == 503
    assert r.headers.get("x-replaced") == "yes"
    assert "x-before" not in r.headers
    assert r.text == "replaced after empty"


def test_exc_info_after_headers_sent_aborts(raw_server):
    ident = uuid.uuid4().hex[:12]
    mark = raw_server.log_mark()
    resp = raw_server.raw(req(f"/exc_info_after?id={ident}"))
    # the response must not look complete: either nothing, or the 200 head and
    # the first chunk, but never the chunked terminator nor later data
    assert not resp.complete, f"aborted response looks complete: {resp.raw[:500]!r}"
    if resp.status is not None:
        assert resp.status == 200
        assert b"SHOULD-NOT-BE-SENT" not in resp.raw
    events = read_events(raw_server.base_url, ident)
    assert f"exc-info-not-reraised:{ident}" not in events
    raw_server.wait_for_log(f"exc-info-after-{ident}", since=mark)
    assert_still_serving(raw_server)


def test_second_start_response_without_exc_info_is_error(raw_server):
    r = httpx.get(raw_server.url("/double_start"), timeout=10)
    assert r.status_code == 500
    assert "second start_response was accepted" not in r.text
    assert_still_serving(raw_server)


# ---------------------------------------------------------------- exceptions


def test_exception_gives_500_and_traceback(raw_server):
    ident = uuid.uuid4().hex[:12]
    mark = raw_server.log_mark()
    r = httpx.get(raw_server.url(f"/raise?id={ident}"), timeout=10)
    assert r.status_code == 500
    assert f"app-boom-{ident}" not in r.text  # no traceback leaked to the client
    log = raw_server.wait_for_log(f"app-boom-{ident}", "Traceback", since=mark)
    assert "RuntimeError" in log
    assert_still_serving(raw_server)


def test_exception_after_start_response_before_body(raw_server):
    ident = uuid.uuid4().hex[:12]
    mark = raw_server.log_mark()
    r = httpx.get(raw_server.url(f"/raise_after_start?id={ident}"), timeout=10)
    assert r.status_code == 500
    raw_server.wait_for_log(f"app-boom-after-start-{ident}", "Traceback", since=mark)
    assert_still_serving(raw_server)


def test_many_exceptions_do_not_break_server(raw_server):
    with httpx.Client(timeout=10) as c:
        for i in range(30):
            assert c.get(raw_server.url(f"/raise?id=many{i}")).status_code == 500
            assert c.get(raw_server.url("/hello")).status_code == 200


# ---------------------------------------------------------------- close()


def wait_events(server, ident, needed, timeout=10.0):
    def check():
        evs = read_events(server.base_url, ident)
        return evs if all(n in evs for n in needed) else None
    return wait_until(check, timeout, interval=0.1, message=f"events {needed}")


def test_close_called_after_normal_iteration(raw_server):
    ident = uuid.uuid4().hex[:12]
    r = httpx.get(raw_server.url(f"/close/normal?id={ident}"), timeout=10)
    assert r.status_code == 200
    assert r.content == b"c0;" + b"." * 13 + b"c1;" + b"." * 13 + b"c2;" + b"." * 13
    evs = wait_events(raw_server, ident, [f"exhausted:{ident}", f"closed:{ident}"])
    assert evs.count(f"closed:{ident}") == 1
    assert_still_serving(raw_server)
    assert read_events(raw_server.base_url, ident).count(f"closed:{ident}") == 1


def test_close_called_when_iteration_raises(raw_server):
    ident = uuid.uuid4().hex[:12]
    mark = raw_server.log_mark()
    resp = raw_server.raw(req(f"/close/error?id={ident}&fail_at=2"))
    # two chunks went out, then the app failed: the response must be cut short
    assert not resp.complete, resp.raw[:500]
    evs = wait_events(raw_server, ident, [f"closed:{ident}"])
    assert evs.count(f"closed:{ident}") == 1
    assert f"exhausted:{ident}" not in evs
    raw_server.wait_for_log(f"tracked-failure-{ident}", since=mark)
    assert_still_serving(raw_server)


def test_close_called_when_iteration_raises_before_first_chunk(raw_server):
    ident = uuid.uuid4().hex[:12]
    r = httpx.get(raw_server.url(f"/close/error?id={ident}&fail_at=0"), timeout=10)
    assert r.status_code == 500
    evs = wait_events(raw_server, ident, [f"closed:{ident}"])
    assert evs.count(f"closed:{ident}") == 1


# ---------------------------------------------------------------- file_wrapper


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("files") / "big.bin"
    data = random.Random(7).randbytes(8 * 1024 * 1024 + 5)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest(), len(data)


@pytest.mark.parametrize("cl", ["0", "1"], ids=["no-content-length", "content-length"])
def test_file_wrapper_large_file(raw_server, big_file, cl):
    path, digest, size = big_file
    r = httpx.get(raw_server.url("/file_wrapper"), params={"path": str(path), "cl": cl}, timeout=60)
    assert r.status_code == 200
    assert len(r.content) == size
    assert hashlib.sha256(r.content).hexdigest() == digest
    if cl == "1":
        assert r.headers["content-length"] == str(size)


def _half_closed_get(port, target, version="1.1"):
    """GET target, then shut the sending side (nc -N, HTTP/1.0 scripts) and
    read the answer to the end."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall(f"GET {target} HTTP/{version}\r\nHost: h\r\n\r\n".encode())
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return parse_raw_response(data)


@pytest.mark.parametrize("target, body", [
    ("/hello", b"hello world"),
    ("/stream?n=3&delay=0.05", b"chunk-0;chunk-1;chunk-2;"),
    ("/sleep?t=0.3", None),
    ("/tail", None),
], ids=["one-chunk", "streamed", "slow", "large-tail"])
def test_a_client_that_half_closed_after_its_request_gets_the_whole_response(raw_server, target, body):
    """Go cancels the request when the client half-closes, though it still
    reads: it gets the app's whole response, as from gunicorn (and Caddy's
    respond); before, the headers went out and the body was dropped, which
    made a streamed response an empty 200 with Content-Length: 0."""
    resp = _half_closed_get(raw_server.port, target)
    assert resp.status == 200 and resp.complete, resp.raw[:300]
    whole = httpx.get(raw_server.url(target), timeout=15)
    if body is None:
        assert len(resp.body) == len(whole.content) > 0
    else:
        assert resp.body == body == whole.content


def test_file_wrapper_file_is_sent_before_the_apps_close_changes_it(raw_server, tmp_path):
    """A file_wrapper whose close() the app replaced (here: it truncates the
    file) is read before close() runs, as PEP 3333 orders them; Go sending
    the file after the thread was free sent a Content-Length and no bytes."""
    p = tmp_path / "truncated-on-close.bin"
    data = os.urandom(300_000)
    p.write_bytes(data)
    r = httpx.get(raw_server.url("/file_wrapper"), params={"path": str(p), "truncate_on_close": "1"}, timeout=10)
    assert r.status_code == 200
    assert len(r.content) == len(data) and r.content == data
    assert p.stat().st_size == 0  # close() ran


def test_file_wrapper_small_file(raw_server, tmp_path):
    p = tmp_path / "small.txt"
    p.write_bytes(b"small file content\n")
    r = httpx.get(raw_server.url("/file_wrapper"), params={"path": str(p), "cl": "1"}, timeout=10)
    assert r.status_code == 200
    assert r.content == b"small file content\n"


def test_file_wrapper_bytesio(raw_server):
    """BytesIO has fileno() that raises: a sendfile fast path must fall back."""
    r = httpx.get(raw_server.url("/file_wrapper"), params={"kind": "bytesio", "size": "50000"}, timeout=10)
    assert r.status_code == 200
    assert r.content == (b"bytesio-content-" * 4096)[:50000]


def test_file_wrapper_read_only_filelike_closed(raw_server):
    ident = uuid.uuid4().hex[:12]
    r = httpx.get(raw_server.url("/file_wrapper"),
                  params={"kind": "readonly", "size": "70000", "id": ident}, timeout=10)
    assert r.status_code == 200
    assert r.content == (b"readonly-content-" * 4096)[:70000]
    # the wrapper's close() must call the file-like object's close()
    wait_events(raw_server, ident, [f"filelike-closed:{ident}"])


# ---------------------------------------------------------------- bodiless responses


def test_head_sends_no_body(raw_server):
    resp = raw_server.raw(req("/hello", method="HEAD"), head_request=True)
    assert resp.status == 200
    assert resp.after_headers == b""
    assert resp.header("Content-Length") in (None, "11")


def test_head_streaming_sends_no_body(raw_server):
    resp = raw_server.raw(req("/big?size=100000", method="HEAD"), head_request=True)
    assert resp.status == 200
    assert resp.after_headers == b""


def test_head_on_keepalive_connection_keeps_framing(raw_server):
    """After a HEAD response the next response on the same connection must parse."""
    data = (b"HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    resp = raw_server.raw(data, head_request=True)
    assert resp.status == 200
    second = resp.after_headers
    assert second.startswith(b"HTTP/1.1 200"), second[:200]
    assert second.endswith(b"hello world")


@pytest.mark.parametrize("code", [204, 304])
def test_no_body_statuses_keepalive_framing(raw_server, code):
    data = (f"GET /status?code={code}&body=0 HTTP/1.1\r\nHost: x\r\n\r\n"
            f"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").encode()
    resp = raw_server.raw(data, head_request=True)
    assert resp.status == code
    assert resp.header("X-Status-Test") == str(code)
    assert resp.header("Transfer-Encoding") is None
    # nothing between this response and the next one on the same connection
    assert resp.after_headers.startswith(b"HTTP/1.1 200"), resp.after_headers[:200]
    assert resp.after_headers.endswith(b"hello world")


@pytest.mark.parametrize("code", [204, 304])
def test_no_body_statuses_drop_app_body(raw_server, code):
    """The app (wrongly) returns a body with a bodiless status: none goes out."""
    resp = raw_server.raw(req(f"/status?code={code}&body=1"), head_request=True)
    assert resp.status == code
    assert resp.header("Transfer-Encoding") is None
    assert resp.after_headers == b""
    assert_still_serving(raw_server)


# ---------------------------------------------------------------- Content-Length


def test_content_length_honoured(raw_server):
    resp = raw_server.raw(req("/cl_exact"))
    assert resp.status == 200
    assert resp.header("Content-Length") == "5"
    assert resp.header("Transfer-Encoding") is None
    assert resp.after_headers == b"hello"


def test_content_length_not_exceeded(raw_server):
    resp = raw_server.raw(req("/cl_too_long"))
    assert resp.status == 200
    assert resp.header("Content-Length") == "5"
    assert resp.after_headers == b"hello"
    assert_still_serving(raw_server)


@pytest.mark.parametrize("pieces", [1, 3], ids=["one-chunk", "streamed"])
def test_body_shorter_than_content_length_is_cut_off(raw_server, pieces):
    """An app that sends less than its Content-Length: the client must see
    truncation, as through reverse_proxy, not a response that looks whole.
    HTTP/1.1: the connection closes after what came. HTTP/2: the stream is
    reset (RST_STREAM), never ended with END_STREAM (a client that does not
    count bytes would take 5 of 100 for the whole body)."""
    mark = raw_server.log_mark()
    resp = raw_server.raw(req(f"/cl_short?n={pieces}"))
    assert resp.status == 200 and resp.header("Content-Length") == "100"
    assert resp.after_headers == b"short" * pieces and not resp.complete
    frames = [f for f in h2_frames(raw_server.port, f"/cl_short?n={pieces}") if f.stream == 1]
    assert frames[0].type == "HEADERS" and frames[0].headers["content-length"] == "100", frames
    assert b"".join(f.data for f in frames if f.type == "DATA") == b"short" * pieces
    assert not any(f.end_stream for f in frames), frames
    assert frames[-1].type == "RST_STREAM", frames
    raw_server.wait_for_log("less than its Content-Length", since=mark)
    assert_still_serving(raw_server)


@pytest.mark.parametrize("code", [204, 304])
def test_bodiless_status_with_content_length_is_not_cut_off(raw_server, code):
    """204/304 carry no body, so their Content-Length is not owed: the
    response ends normally. A 204's Content-Length is dropped over HTTP/2 as
    over HTTP/1.1 (RFC 9110 8.6; Django adds "Content-Length: 0" to every
    204), a 304's kept (it describes the representation)."""
    frames = [f for f in h2_frames(raw_server.port, f"/status?code={code}&cl=4") if f.stream == 1]
    assert frames and frames[0].type == "HEADERS" and frames[0].headers[":status"] == str(code), frames
    assert frames[-1].end_stream and not any(f.type == "RST_STREAM" for f in frames), frames
    assert ("content-length" in frames[0].headers) == (code == 304), frames[0].headers
    resp = raw_server.raw(req(f"/status?code={code}&cl=4"))
    assert resp.status == code and resp.header("Content-Length") is None


def test_head_with_content_length_is_not_cut_off(raw_server):
    frames = [f for f in h2_frames(raw_server.port, "/cl_short", method="HEAD") if f.stream == 1]
    assert frames and frames[0].headers[":status"] == "200" and frames[-1].end_stream, frames
    assert not any(f.type == "RST_STREAM" for f in frames), frames


def test_connection_close_over_h2_leaves_the_connection_open(raw_server):
    """The app's "Connection: close" closes an HTTP/1.1 connection (as under
    gunicorn) but is dropped over HTTP/2, where Go would send a GOAWAY and
    end every other stream of the connection (through reverse_proxy the
    header is dropped too)."""
    frames = h2_frames(raw_server.port, "/set_headers?h=Connection:close&h=Content-Type:text/plain")
    assert not any(f.type == "GOAWAY" for f in frames), frames
    mine = [f for f in frames if f.stream == 1]
    assert "connection" not in mine[0].headers and mine[-1].end_stream, mine


def test_streaming_without_content_length_is_chunked(raw_server):
    resp = raw_server.raw(req("/stream?n=3&delay=0"))
    assert resp.status == 200
    assert resp.chunked
    assert resp.complete
    assert resp.body == b"chunk-0;chunk-1;chunk-2;"


def test_small_chunks_yielded_together_share_writes(raw_server):
    """10,000 ten-byte chunks yielded in a row reach the client whole and in
    order, and chunks yielded while the last ones were being written go out
    together: not one write and flush per chunk (10,000 chunks on the wire)."""
    resp = raw_server.raw(req("/firehose?size=10&total=100000"))
    assert resp.status == 200 and resp.chunked and resp.complete
    chunks = dechunk(resp.after_headers)
    assert b"".join(chunks) == (b"x" * 9 + b"\n") * 10000
    assert len(chunks) < 5000, f"{len(chunks)} chunks on the wire for 10,000 yielded in a row"


@pytest.mark.parametrize("h2", [False, True], ids=["http1", "h2c"])
def test_streamed_chunks_of_every_size_arrive_intact(raw_server, h2):
    """Chunks queued for the writer (small), written directly (32 KiB and
    more) and both mixed in one response reach the client whole, over
    HTTP/1.1 and HTTP/2."""
    if h2:
        pytest.importorskip("h2", reason="h2 package (httpx[http2]) not installed")
    with httpx.Client(http1=not h2, http2=h2, timeout=60) as c:
        for size, total in [(10, 100_000), (1000, 20_000_000), (40_000, 20_000_000), (200_000, 20_000_000)]:
            r = c.get(raw_server.url(f"/firehose?size={size}&total={total}"))
            assert r.status_code == 200 and r.http_version == ("HTTP/2" if h2 else "HTTP/1.1")
            assert r.content == (b"x" * (size - 1) + b"\n") * (total // size), (size, len(r.content))
        r = c.get(raw_server.url("/mixed-chunks"))
        assert r.content == MIXED_CHUNKS


def test_stream_to_a_client_that_does_not_read_is_bounded(raw_server):
    """The app gets ahead of a client that reads nothing by the kernel's
    socket buffers and a bounded queue, then waits: 256 MiB of 4 KiB chunks
    are not buffered."""
    ident = uuid.uuid4().hex[:12]
    sent = held_back_at(raw_server, f"/firehose?size=4096&total={256 << 20}&id={ident}", ident)
    assert sent < 32 << 20, f"{sent} bytes yielded to a client that reads nothing"
    assert_still_serving(raw_server)


# ---------------------------------------------------------------- invalid status / headers


@pytest.mark.parametrize("kind", ["crlf_value", "lf_value", "cr_value", "nul_value", "crlf_name",
                                  "crlf_status", "status_abc", "status_20", "status_no_reason_space"])
def test_invalid_status_or_header_rejected(raw_server, kind):
    resp = raw_server.raw(req(f"/bad?kind={kind}"))
    assert resp.status == 500, resp.raw[:500]
    assert resp.header("X-Injected") is None
    head = resp.raw.split(b"\r\n\r\n", 1)[0]
    assert b"X-Injected" not in head
    assert b"bad response was sent" not in resp.raw
    assert_still_serving(raw_server)


@pytest.mark.parametrize("code", [100, 103])
def test_a_status_out_of_range_is_500_naming_it(raw_server, code):
    """1xx responses are the server's to send (Go's range is 200-999): a
    clean 500, and the log says which code and what is allowed."""
    mark = raw_server.log_mark()
    resp = raw_server.raw(req(f"/status?code={code}&body=1"))
    assert resp.status == 500, resp.raw[:300]
    raw_server.wait_for_log(f"invalid response status code {code}: must be 200-999", since=mark)
    assert_still_serving(raw_server)


def test_headers_given_as_a_tuple_are_taken_as_gunicorn_does(raw_server):
    r = httpx.get(raw_server.url("/headers_as?as=tuple"), timeout=10)
    assert r.status_code == 200, r.text[:300]
    assert r.headers["x-given-as"] == "tuple" and r.text == "headers given"


@pytest.mark.parametrize("one_chunk", ["1", "0"], ids=["list", "generator"])
def test_status_and_chunks_may_be_str_and_bytes_subclasses(raw_server, one_chunk):
    """PEP 3333's status "str" and body "bytestrings" include subclasses,
    as gunicorn takes them; both were a 500."""
    r = httpx.get(raw_server.url(f"/typed_values?list={one_chunk}"), timeout=10)
    assert (r.status_code, r.content) == (201, b"typed")


def test_headers_given_as_a_dict_are_500(raw_server):
    r = httpx.get(raw_server.url("/headers_as?as=dict"), timeout=10)
    assert r.status_code == 500 and "x-given-as" not in r.headers
    assert_still_serving(raw_server)


def test_latin1_response_header_sent_as_latin1_bytes(raw_server):
    resp = raw_server.raw(req("/latin1_header"))
    assert resp.status == 200
    head = resp.raw.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nX-Latin1: caf\xe9 \xa7\xff\r\n" in head + b"\r\n", head


@pytest.mark.parametrize("path,what", [
    ("/str_body", "iterable yields str instead of bytes"),
    ("/return_none", "app returns None"),
    ("/no_start_response", "start_response never called"),
])
def test_broken_app_results_are_500(raw_server, path, what):
    r = httpx.get(raw_server.url(path), timeout=10)
    assert r.status_code == 500, f"{what}: got {r.status_code} {r.text[:200]!r}"
    assert "a str is not a bytestring" not in r.text
    assert "body without start_response" not in r.text
    assert_still_serving(raw_server)


@pytest.mark.parametrize("kind", ["none", "str_empty", "zero"])
def test_falsy_non_bytes_chunk_is_an_error(raw_server, kind):
    """PEP 3333: chunks are bytestrings. None, "" or 0 after a good chunk is
    the app's error (logged, the response cut short), not an empty chunk."""
    with httpx.Client(timeout=10) as c:
        with pytest.raises(httpx.RemoteProtocolError):
            c.get(raw_server.url(f"/bad_chunk?kind={kind}"))
    raw_server.wait_for_log("must be bytes")
    assert_still_serving(raw_server)


def test_dynamic_header_values_survive_gc(raw_server):
    """Header str objects are freed right after start_response; the response
    must still carry the original text (the bridge has to copy it)."""
    bad = []
    with httpx.Client(timeout=10) as c:
        for j in range(5):
            tag = f"seq{j}"
            try:
                r = c.get(raw_server.url(f"/dyn_headers?n=20&tag={tag}"))
            except httpx.HTTPError as exc:
                bad.append(f"{tag}: {exc!r}")
                continue
            expected = r.json()
            assert r.headers.get("content-length") == str(len(r.content))
            bad += [f"{tag}: {k}={r.headers.get(k)!r}" for k, v in expected.items() if r.headers.get(k) != v]
    assert not bad, bad[:5]
