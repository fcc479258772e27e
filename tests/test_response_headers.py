"""The app's response headers reach the client as they would through Caddy's
reverse_proxy in front of gunicorn or uvicorn: nothing guessed, nothing
doubled, no hop-by-hop header from the app, and a clean 500 for a
self-contradicting one. Each case runs on the WSGI and on the ASGI bridge."""

import socket

import httpx
import pytest

from conftest import ASGI_RAW_DIR, RAW_APP_DIR, asgi_block, python_block

BODY = b"<!DOCTYPE html><html><body>no type was set</body></html>"

BRIDGES = [("raw_server", "/set_headers"), ("asgi_server", "/set-headers")]


@pytest.fixture(params=BRIDGES, ids=["wsgi", "asgi"])
def get(request):
    server = request.getfixturevalue(request.param[0])
    path = request.param[1]

    def get(*headers):
        return httpx.get(server.url(path), params=[("h", h) for h in headers], timeout=10)
    get.server, get.path = server, path
    return get


def test_no_content_type_is_guessed(get):
    """Go would sniff text/html from the body; PEP 3333 leaves the meaning of
    a response to the app, and gunicorn/uvicorn send no Content-Type."""
    r = get("X-A:1")
    assert r.status_code == 200 and r.content == BODY
    assert "content-type" not in r.headers
    assert get("Content-Type:application/x-app").headers["content-type"] == "application/x-app"


def test_app_server_header_replaces_caddys(get):
    r = get("Server:myapp/1.0", "Content-Type:text/plain")
    assert r.headers.get_list("server") == ["myapp/1.0"]
    assert get("Content-Type:text/plain").headers.get_list("server") == ["Caddy"]


def test_hop_by_hop_headers_from_the_app_are_dropped(get):
    r = get("Content-Type:text/plain", "Connection:keep-alive, X-Secret", "Keep-Alive:timeout=5",
            "Proxy-Authenticate:Basic", "Upgrade:h2c", "X-Kept:yes")
    assert r.status_code == 200 and r.content == BODY
    for name in ("connection", "keep-alive", "proxy-authenticate", "upgrade"):
        assert name not in r.headers, name
    assert r.headers["x-kept"] == "yes"


def test_headers_named_by_the_apps_connection_header_are_dropped(get):
    """RFC 9110 §7.6.1: what Connection names describes the connection;
    reverse_proxy drops it from an upstream's response."""
    r = get("Content-Type:text/plain", "Connection:X-Secret, x-other", "X-Secret:1", "X-Other:2", "X-Kept:yes")
    assert r.status_code == 200 and r.content == BODY
    assert "x-secret" not in r.headers and "x-other" not in r.headers
    assert r.headers["x-kept"] == "yes"


def test_connection_close_from_the_app_closes_the_connection(get):
    """As uvicorn does (gunicorn keeps the connection): the response says
    close, and it is so."""
    s = socket.create_connection(("127.0.0.1", get.server.port), timeout=10)
    try:
        s.sendall(f"GET {get.path}?h=Connection:close&h=Content-Length:{len(BODY)} HTTP/1.1\r\n"
                  "Host: h\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):  # ends only if the server closes
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"\r\nConnection: close" in head, head
    assert body == BODY


def test_repeated_equal_content_length_is_sent_once(get):
    n = str(len(BODY))
    r = get(f"Content-Length:{n}", f"Content-Length:{n}", "Content-Type:text/html")
    assert r.status_code == 200 and r.content == BODY
    assert r.headers.get_list("content-length") == [n]


def test_conflicting_content_lengths_are_a_500(get):
    """Go would send the first and the body be counted against another:
    an app's self-contradicting response becomes a clean 500 instead of a
    connection closed with no reply."""
    r = get("Content-Length:3", "Content-Length:5", "Content-Type:text/plain")
    assert r.status_code == 500
    assert r.text == "Internal Server Error"
    assert get("Content-Type:text/plain").status_code == 200


@pytest.mark.parametrize("value", [" {n} ", "\t{n}", "+{n}"])
def test_content_length_with_spaces_around_is_served(get, value):
    """Spaces around a field value are not part of it (RFC 9110 5.5), and
    gunicorn and uvicorn serve such a Content-Length: the client gets the
    bare number and the whole body, not a 500."""
    r = get("Content-Length:" + value.format(n=len(BODY)), "Content-Type:text/html")
    assert r.status_code == 200 and r.content == BODY
    assert r.headers.get_list("content-length") == [str(len(BODY))]


@pytest.mark.parametrize("header,why", [
    ("Content-Length:5x", "Content-Length must be a number of bytes"),
    ("Content-Length:-1", "Content-Length must be a number of bytes"),
    ("X Bad:1", "a header name must be a token"),
])
def test_a_refused_header_is_named_in_the_log(get, header, why):
    mark = get.server.log_mark()
    r = get(header, "Content-Type:text/plain")
    assert r.status_code == 500
    name, value = header.split(":", 1)
    log = get.server.wait_for_log("invalid response header", since=mark)
    assert f"invalid response header {name!r}: {value!r}: {why}" in log, log[-2000:]


def test_caddys_header_directive_and_the_apps_header_are_both_sent(start_caddy):
    """`header` before python sets a header the app also sets: both values go
    out, as through reverse_proxy (which adds the upstream's); ASGI replaced
    Caddy's value with the app's."""
    sites = ("http://:@PORT@ {\n\theader Cache-Control no-store\n\theader X-Site a\n"
             "\thandle_path /w/* {\n" + python_block("rawapp:app", RAW_APP_DIR, venv=False, indent="\t\t")
             + "\n\t}\n\thandle_path /a/* {\n" + asgi_block("asgiapp:app", ASGI_RAW_DIR, indent="\t\t")
             + "\n\t}\n}\n")
    srv = start_caddy("header-directive", sites=sites)
    try:
        for path in ("/w/set_headers", "/a/set-headers"):
            r = httpx.get(srv.url(path), params=[("h", "Cache-Control:max-age=60"), ("h", "Content-Type:text/plain")],
                          timeout=10)
            assert r.status_code == 200, (path, r.text[:200])
            assert r.headers.get_list("cache-control") == ["no-store", "max-age=60"], path
            assert r.headers["x-site"] == "a", path
    finally:
        srv.stop()
