"""App errors: exceptions before/after the response started, missing or
invalid messages. Each gives a sane response and a useful log line, and the
next request still works."""

import uuid

import httpx
import pytest

from conftest import h2_frames, raw_request


def assert_healthy(server):
    r = httpx.get(server.url("/hello"), timeout=10)
    assert r.status_code == 200 and r.text == "hello asgi"


def test_raise_before_start_is_500_with_traceback(asgi_server):
    ident = uuid.uuid4().hex[:12]
    mark = asgi_server.log_mark()
    r = httpx.get(asgi_server.url(f"/error/before-start?id={ident}"), timeout=10)
    assert r.status_code == 500
    assert ident not in r.text, "the exception leaked into the response body"
    log = asgi_server.wait_for_log(f"asgi-before-start-{ident}", "Traceback", "RuntimeError", since=mark)
    assert "err_before_start" in log, "the traceback does not show the app's frame"
    assert_healthy(asgi_server)


def test_raise_after_start_aborts_connection(asgi_server):
    ident = uuid.uuid4().hex[:12]
    mark = asgi_server.log_mark()
    resp = raw_request(asgi_server.port, f"GET /error/after-start?id={ident} HTTP/1.1\r\nHost: h\r\n"
                                         f"Connection: close\r\n\r\n".encode())
    assert resp.status == 200, resp.raw[:500]
    assert b"partial-body;" in resp.body
    assert not resp.complete, f"a broken response looked complete to the client: {resp.raw[-200:]!r}"
    asgi_server.wait_for_log(f"asgi-after-start-{ident}", "Traceback", since=mark)
    assert_healthy(asgi_server)


def test_raise_after_start_httpx_sees_error(asgi_server):
    ident = uuid.uuid4().hex[:12]
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(asgi_server.url(f"/error/after-start?id={ident}"), timeout=10)
    assert_healthy(asgi_server)


def test_raise_after_start_with_content_length_is_truncated(asgi_server):
    ident = uuid.uuid4().hex[:12]
    resp = raw_request(asgi_server.port, f"GET /error/after-start-cl?id={ident} HTTP/1.1\r\nHost: h\r\n"
                                         f"Connection: close\r\n\r\n".encode())
    assert resp.status == 200, resp.raw[:500]
    assert resp.header("content-length") == "100"
    assert resp.body == b"only-ten!!"
    assert not resp.complete
    assert_healthy(asgi_server)


def test_body_longer_than_content_length_raises_in_send(asgi_server):
    """As under uvicorn: send() raises, so the client gets a 500 (nothing
    was sent yet) or a cut-off response, never a short one that looks
    whole; the app's traceback is logged. HEAD is exempt (no body is sent)."""
    mark = asgi_server.log_mark()
    r = httpx.get(asgi_server.url("/cl-overrun"), timeout=10)
    assert r.status_code == 500
    asgi_server.wait_for_log("Response content longer than Content-Length", "cl_overrun", since=mark)
    resp = raw_request(asgi_server.port, b"GET /cl-overrun?stream=1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert resp.status == 200 and resp.body == b"01" and not resp.complete, resp.raw[-200:]
    r = httpx.get(asgi_server.url("/cl-overrun?catch=1"), timeout=10)  # the app sees it
    assert r.status_code == 200 and r.text == "Respo"
    r = httpx.head(asgi_server.url("/cl-overrun"), timeout=10)
    assert r.status_code == 200 and r.headers["content-length"] == "5"
    assert_healthy(asgi_server)


def test_body_shorter_than_content_length_raises_in_send(asgi_server):
    """As under uvicorn ("Response content shorter than Content-Length"):
    the last body message leaves the body short of the declared length, so
    send() raises; the client gets a 500 (nothing was sent yet) or a cut-off
    response (HTTP/2: a reset stream), never a short one that looks whole.
    HEAD, 204 and 304 owe no body."""
    mark = asgi_server.log_mark()
    r = httpx.get(asgi_server.url("/cl-overrun?short=1"), timeout=10)
    assert r.status_code == 500
    asgi_server.wait_for_log("Response content shorter than Content-Length", "cl_overrun", since=mark)
    resp = raw_request(asgi_server.port,
                       b"GET /cl-overrun?short=1&stream=1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert resp.status == 200 and resp.body == b"01" and not resp.complete, resp.raw[-200:]
    frames = [f for f in h2_frames(asgi_server.port, "/cl-overrun?short=1&stream=1") if f.stream == 1]
    assert not any(f.end_stream for f in frames) and frames[-1].type == "RST_STREAM", frames
    r = httpx.get(asgi_server.url("/cl-overrun?short=1&catch=1"), timeout=10)  # the app sees it
    assert r.status_code == 200 and r.text == "Respo"
    r = httpx.head(asgi_server.url("/cl-overrun?short=1"), timeout=10)
    assert r.status_code == 200 and r.headers["content-length"] == "5"
    mark = asgi_server.log_mark()
    for code in (204, 304):
        r = httpx.get(asgi_server.url(f"/status?code={code}&cl=5"), timeout=10)
        assert r.status_code == code
    assert_healthy(asgi_server)
    assert "Content-Length" not in asgi_server.log_since(mark), "a bodiless response was counted"


@pytest.mark.parametrize("code", [204, 304])
def test_bodiless_status_over_h2(asgi_server, code):
    """A 204's Content-Length is dropped over HTTP/2 as Go drops it over
    HTTP/1.1 (RFC 9110 8.6), a 304's kept; both end normally."""
    frames = [f for f in h2_frames(asgi_server.port, f"/status?code={code}&cl=4") if f.stream == 1]
    assert frames and frames[0].headers[":status"] == str(code) and frames[-1].end_stream, frames
    assert ("content-length" in frames[0].headers) == (code == 304), frames[0].headers


def test_connection_close_over_h2_leaves_the_connection_open(asgi_server):
    """The app's "Connection: close" ends an HTTP/1.1 connection, but over
    HTTP/2 it is dropped: Go would answer it with a GOAWAY for the whole
    connection."""
    frames = h2_frames(asgi_server.port, "/set-headers?h=Connection:close&h=Content-Type:text/plain")
    assert not any(f.type == "GOAWAY" for f in frames), frames
    mine = [f for f in frames if f.stream == 1]
    assert "connection" not in mine[0].headers and mine[-1].end_stream, mine


def test_raise_after_start_h2c_resets_stream(asgi_server):
    pytest.importorskip("h2", reason="h2 package (httpx[http2]) not installed")
    ident = uuid.uuid4().hex[:12]
    with httpx.Client(http1=False, http2=True, timeout=10) as c:
        with pytest.raises(httpx.HTTPError):
            r = c.get(asgi_server.url(f"/error/after-start?id={ident}"))
            # if no exception: the body must at least not look complete and correct
            pytest.fail(f"h2 response looked complete: {r.status_code} {r.content!r}")
        # the same connection (or a new one) still works
        r = c.get(asgi_server.url("/hello"))
        assert r.status_code == 200


def test_return_without_response_is_500(asgi_server):
    mark = asgi_server.log_mark()
    r = httpx.get(asgi_server.url("/error/no-response"), timeout=10)
    assert r.status_code == 500
    log = asgi_server.wait_for_log("/error/no-response", since=mark)
    assert "without" in log and "start" in log, log[-2000:]
    assert_healthy(asgi_server)


@pytest.mark.parametrize("route,needles", [
    ("bad-type", ["http.response.bogus-type"]),
    ("str-body", ["body", "str"]),
    ("int-header", ["header"]),
    ("str-status", ["status", "str"]),
    ("status-600", ["status code 600", "200-599"]),  # as uvicorn refuses it
    ("body-before-start", ["http.response.body", "http.response.start"]),
])
def test_invalid_message_is_500_and_logged(asgi_server, route, needles):
    mark = asgi_server.log_mark()
    resp = raw_request(asgi_server.port, f"GET /error/{route} HTTP/1.1\r\nHost: h\r\n"
                                         f"Connection: close\r\n\r\n".encode())
    assert resp.status == 500, f"expected 500, got {resp.status_line!r}; raw {resp.raw[:300]!r}"
    log = asgi_server.wait_for_log(f"/error/{route}", since=mark)
    for n in needles:
        assert n in log, f"{n!r} not in the log for /error/{route}:\n{log[-2000:]}"
    assert_healthy(asgi_server)


def test_errors_on_many_requests_do_not_wedge(asgi_server):
    for i in range(30):
        r = httpx.get(asgi_server.url(f"/error/before-start?id=loop{i}"), timeout=10)
        assert r.status_code == 500
    assert_healthy(asgi_server)
