"""The seed's Flask hello world behind `route { python { ... } }`."""

import httpx
import pytest

from conftest import APPS_DIR, python_block

SEED_DIR = APPS_DIR / "seed_flask"


@pytest.fixture(scope="module")
def seed_server(start_caddy, venv_dir):
    sites = ("http://:@PORT@ {\n\troute {\n"
             + python_block("main:app", SEED_DIR, indent="\t\t") + "\n\t}\n}\n")
    srv = start_caddy("seed", sites=sites)
    yield srv
    srv.stop()


def test_hello_world(seed_server):
    r = httpx.get(seed_server.url("/hello-world"), timeout=10)
    assert r.status_code == 200
    assert r.text == "Hello world!"
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["content-length"] == "12"


def test_unknown_route_is_flask_404(seed_server):
    r = httpx.get(seed_server.url("/nope"), timeout=10)
    assert r.status_code == 404
    assert "Not Found" in r.text


def test_method_not_allowed(seed_server):
    r = httpx.post(seed_server.url("/hello-world"), content=b"x", timeout=10)
    assert r.status_code == 405


def test_repeated_requests_keepalive(seed_server):
    with httpx.Client(timeout=10) as c:
        for _ in range(200):
            r = c.get(seed_server.url("/hello-world"))
            assert r.status_code == 200
            assert r.text == "Hello world!"
