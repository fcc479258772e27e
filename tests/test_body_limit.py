"""Caddy's `request_body max_size` in front of the app.

A Content-Length over the limit is refused by Caddy before the app runs. A
chunked body is found to be over it only as the app reads: the app's read
fails, and the client gets Caddy's 413 (through the site's handle_errors, if
it has one), not what the app made of a cut-off body.
"""

import socket

import httpx
import pytest

from conftest import APPS_DIR, ASGI_RAW_DIR, RAW_APP_DIR, asgi_block, parse_raw_response, python_block, wait_until

def _site(port: str, errors: str = "") -> str:
    def at(prefix, block):
        return f"\thandle_path /{prefix}/* {{\n{block}\n\t}}\n"
    return (f"http://:{port} {{\n"
            f"\trequest_body {{\n\t\tmax_size 1KB\n\t}}\n"
            + at("wsgi", python_block("rawapp:app", RAW_APP_DIR, venv=False, indent="\t\t"))
            + at("flask", python_block("main:app", APPS_DIR / "flask_app", indent="\t\t"))
            + at("asgi", asgi_block("asgiapp:app", ASGI_RAW_DIR, indent="\t\t"))
            + at("fastapi", asgi_block("main:app", APPS_DIR / "fastapi_app", indent="\t\t"))
            + errors + "}\n")


@pytest.fixture(scope="module")
def limited(start_caddy):
    """Port 0: Caddy's defaults. Port 1: handle_errors, and enable_full_duplex
    (the app may read the body after its response began, over HTTP/1.1)."""
    errors = '\thandle_errors 413 {\n\t\trespond "over the limit: {err.status_code}" 413\n\t}\n'
    srv = start_caddy("body-limit", sites=_site("@PORT0@") + _site("@PORT1@", errors), nports=2,
                      global_extra="\tservers 127.0.0.1:@PORT1@ {\n\t\tenable_full_duplex\n\t}")
    yield srv
    srv.stop()


def chunked(body: bytes, piece: int = 700):
    """A request body httpx sends with Transfer-Encoding: chunked."""
    return iter([body[i:i + piece] for i in range(0, len(body), piece)])


def post(srv, port_index, path, body, piece=700, **kw):
    url = f"http://127.0.0.1:{srv.ports[port_index]}{path}"
    return httpx.post(url, content=chunked(body, piece), timeout=15, **kw)


FORM = {"headers": {"Content-Type": "application/x-www-form-urlencoded"}}
JSON = {"headers": {"Content-Type": "application/json"}}
OVER = {
    # path, a body over the limit, one under it, headers: each app reads
    # the body its own way
    "raw WSGI read()": ("/wsgi/echo", b"x" * 5000, b"x" * 800, {}),
    "Flask form": ("/flask/form", b"a=" + b"x" * 5000, b"a=" + b"x" * 800, FORM),
    "raw ASGI receive()": ("/asgi/echo", b"x" * 5000, b"x" * 800, {}),
    "FastAPI JSON": ("/fastapi/items", b'{"name": "' + b"x" * 5000 + b'", "price": 1}',
                     b'{"name": "' + b"x" * 800 + b'", "price": 1}', JSON),
}


@pytest.mark.parametrize("case", list(OVER))
def test_chunked_body_over_the_limit_is_413(limited, case):
    path, over, under, kw = OVER[case]
    r = post(limited, 0, path, over, **kw)
    assert r.status_code == 413, (r.status_code, r.text[:300])
    assert r.text == ""  # Caddy's own 413, not a page from the app
    # The same app goes on serving.
    ok = post(limited, 0, path, under, **kw)
    assert ok.status_code in (200, 201), (ok.status_code, ok.text[:300])


@pytest.mark.parametrize("case", list(OVER))
def test_the_413_goes_through_handle_errors(limited, case):
    path, over, _, kw = OVER[case]
    r = post(limited, 1, path, over, **kw)
    assert (r.status_code, r.text) == (413, "over the limit: 413")


@pytest.mark.parametrize("path", ["/wsgi/echo", "/asgi/echo"])
def test_chunked_body_under_the_limit_reaches_the_app(limited, path):
    body = bytes(range(256)) * 3  # 768 bytes
    r = post(limited, 0, path, body, piece=100)
    assert r.status_code == 200
    assert r.content == body


@pytest.mark.parametrize("path", ["/wsgi/echo", "/asgi/echo"])
def test_content_length_over_the_limit_is_413_before_the_app(limited, path):
    r = httpx.post(f"http://127.0.0.1:{limited.ports[0]}{path}", content=b"x" * 5000, timeout=15)
    assert r.status_code == 413


STREAMED = ["/wsgi/echo_streamed", "/asgi/echo-streamed"]


@pytest.mark.parametrize("path", STREAMED)
def test_over_the_limit_after_the_response_began_cuts_it_off(limited, path):
    """With full duplex the app reads while it answers; going over the limit
    then cuts the response off: the client must not take it for a whole one."""
    with pytest.raises(httpx.RemoteProtocolError):
        r = post(limited, 1, path, b"x" * 5000, piece=300)
        pytest.fail(f"a whole response: {r.status_code} {r.text!r}")
    r = post(limited, 1, path, b"x" * 500, piece=300)
    assert r.status_code == 200
    lines = r.text.split("\n")
    assert (lines[0], lines[-2:]) == ("start", ["end", ""])
    assert sum(int(n) for n in lines[1:-2]) == 500  # the whole body was read


@pytest.mark.parametrize("path", STREAMED)
def test_body_read_after_the_response_began_needs_full_duplex(limited, path):
    """Without enable_full_duplex Go discards an HTTP/1.x body's unread part
    when the response starts. An app reading it later is cut off, and the
    log says why, instead of a response that looks whole."""
    with pytest.raises(httpx.RemoteProtocolError):
        r = post(limited, 0, path, b"x" * 500, piece=300)
        pytest.fail(f"a whole response: {r.status_code} {r.text!r}")
    wait_until(lambda: "enable_full_duplex" in limited.log(), timeout=5)


@pytest.mark.parametrize("path", ["/wsgi/hello", "/asgi/hello"])
def test_unread_chunked_body_under_full_duplex_keeps_the_connection(limited, path):
    """Under enable_full_duplex, an app that answers without reading a
    chunked body leaves Go to drain it after the handler, which panics in
    Go's wait for the next request (golang/go#68560) and drops the
    keep-alive connection: caddysnake drains it before returning."""
    port, mark = limited.ports[1], limited.log_mark()
    first = (f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
             "5\r\nhello\r\n0\r\n\r\n").encode()
    second = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(first)
        got = b""
        while not parse_raw_response(got).complete:
            chunk = s.recv(65536)
            assert chunk, f"connection closed after {got!r}"
            got += chunk
        assert parse_raw_response(got).status == 200, got
        s.sendall(second)
        rest = b""
        while chunk := s.recv(65536):
            rest += chunk
    assert parse_raw_response(rest).status == 200, rest
    assert "invalid concurrent Body.Read" not in limited.log_since(mark)
