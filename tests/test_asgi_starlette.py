"""A Starlette app (routes, a BaseHTTPMiddleware, streaming) on the ASGI bridge."""

import time

import httpx
import pytest

from conftest import APPS_DIR, asgi_block

STARLETTE_DIR = APPS_DIR / "starlette_app"


@pytest.fixture(scope="module")
def starlette_server(start_caddy, venv_dir):
    # the app at the root of one port, and under handle_path /sub/* on another
    sites = ("http://:@PORT0@ {\n" + asgi_block("main:app", STARLETTE_DIR) + "\n}\n"
             "http://:@PORT1@ {\n\thandle_path /sub/* {\n" + asgi_block("main:app", STARLETTE_DIR, indent="\t\t")
             + "\n\t}\n}\n")
    srv = start_caddy("starlette", sites=sites, nports=2)
    yield srv
    srv.stop()


def test_homepage_with_middleware(starlette_server):
    r = httpx.get(starlette_server.url("/"), timeout=10)
    assert r.status_code == 200
    assert r.text == "starlette home"
    assert r.headers["x-middleware"] == "starlette-mw"
    assert r.headers["x-seen-path"] == "/"


def test_path_params_and_url_for(starlette_server):
    port = starlette_server.ports[0]
    r = httpx.get(starlette_server.url("/users/alice?x=1&y=%C3%A9"), timeout=10)
    assert r.status_code == 200
    assert r.json() == {"user": "alice", "url": f"http://127.0.0.1:{port}/users/alice",
                        "query": {"x": "1", "y": "\u00e9"}}
    # the path parameter is percent-decoded
    assert httpx.get(starlette_server.url("/users/al%20ice"), timeout=10).json()["user"] == "al ice"
    assert r.headers["x-middleware"] == "starlette-mw"


def test_url_for_under_root_path(starlette_server):
    port = starlette_server.ports[1]
    r = httpx.get(starlette_server.url("/sub/users/bob", port_index=1), timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["url"] == f"http://127.0.0.1:{port}/sub/users/bob"
    assert r.headers["x-seen-path"] == "/sub/users/bob"


def test_json_post(starlette_server):
    r = httpx.post(starlette_server.url("/echo"), json={"a": [1, 2, {"b": "\u2603"}]}, timeout=10)
    assert r.status_code == 201
    assert r.json() == {"got": {"a": [1, 2, {"b": "\u2603"}]}}


def test_404_and_405(starlette_server):
    assert httpx.get(starlette_server.url("/missing"), timeout=10).status_code == 404
    assert httpx.get(starlette_server.url("/echo"), timeout=10).status_code == 405


def test_streaming_through_middleware(starlette_server):
    t0 = time.monotonic()
    first, buf = None, b""
    with httpx.stream("GET", starlette_server.url("/stream?n=4&delay=0.3"), timeout=15) as r:
        assert r.status_code == 200
        assert r.headers["x-middleware"] == "starlette-mw"
        for piece in r.iter_raw():
            buf += piece
            if first is None and b"tick 0\n" in buf:
                first = time.monotonic() - t0
    total = time.monotonic() - t0
    assert buf == b"tick 0\ntick 1\ntick 2\ntick 3\n"
    assert first is not None and first < total - 0.6, (first, total)
