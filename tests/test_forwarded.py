"""X-Forwarded-For/-Proto/-Host mean what they meant behind Caddy's
reverse_proxy: a client cannot spoof them (apps moved from Caddy→gunicorn or
uvicorn keep trusting them: Django's SECURE_PROXY_SSL_HEADER, Werkzeug's
ProxyFix), and a proxy the server's trusted_proxies vouch for is believed
(its scheme is the app's scheme, as gunicorn and uvicorn derive it)."""

import json

import pytest

from conftest import (ASGI_RAW_DIR, RAW_APP_DIR, asgi_block, decode_scope_value, python_block,
                      raw_request)

SPOOF = (b"X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\n"
         b"X-Forwarded-Host: evil.example\r\n")


def wsgi_view(port, extra=b"", head=b"GET /env HTTP/1.1\r\nHost: site.test\r\n"):
    resp = raw_request(port, head + extra + b"Connection: close\r\n\r\n")
    assert resp.status == 200, resp.raw[:500]
    env = json.loads(resp.body)
    e = env["environ"]
    return {"for": e.get("HTTP_X_FORWARDED_FOR"), "proto": e.get("HTTP_X_FORWARDED_PROTO"),
            "host": e.get("HTTP_X_FORWARDED_HOST"), "scheme": env["wsgi"]["url_scheme"],
            "client": e["REMOTE_ADDR"]}


def asgi_view(port, extra=b"", head=b"GET /scope HTTP/1.1\r\nHost: site.test\r\n"):
    resp = raw_request(port, head + extra + b"Connection: close\r\n\r\n")
    assert resp.status == 200, resp.raw[:500]
    scope = decode_scope_value(json.loads(resp.body)["scope"])
    h = {}
    for k, v in scope["headers"]:
        h.setdefault(k.decode(), []).append(v.decode())
    for name in ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"):
        assert len(h.get(name, [])) <= 1, h  # one value each, never the client's next to ours
    return {"for": h.get("x-forwarded-for", [None])[0], "proto": h.get("x-forwarded-proto", [None])[0],
            "host": h.get("x-forwarded-host", [None])[0], "scheme": scope["scheme"],
            "client": scope["client"][0]}


VIEWS = [("raw_server", wsgi_view), ("asgi_server", asgi_view)]


@pytest.mark.parametrize("fixture,view", VIEWS, ids=["wsgi", "asgi"])
def test_client_cannot_spoof_forwarded_headers(request, fixture, view):
    srv = request.getfixturevalue(fixture)
    assert view(srv.port, SPOOF) == {"for": "127.0.0.1", "proto": "http", "host": "site.test",
                                     "scheme": "http", "client": "127.0.0.1"}
    # and without any: the same values, as reverse_proxy always sends them
    assert view(srv.port) == {"for": "127.0.0.1", "proto": "http", "host": "site.test",
                              "scheme": "http", "client": "127.0.0.1"}


@pytest.mark.parametrize("fixture,view,path", [("raw_server", wsgi_view, b"/env"), ("asgi_server", asgi_view, b"/scope")],
                         ids=["wsgi", "asgi"])
def test_no_forwarded_host_without_a_host(request, fixture, view, path):
    """An HTTP/1.0 client may send no Host: then no X-Forwarded-Host either.
    An empty one would be taken as the host by Django's USE_X_FORWARDED_HOST
    (400 for every such request) where without it Django uses SERVER_NAME."""
    srv = request.getfixturevalue(fixture)
    got = view(srv.port, SPOOF, head=b"GET " + path + b" HTTP/1.0\r\n")
    assert got == {"for": "127.0.0.1", "proto": "http", "host": None, "scheme": "http", "client": "127.0.0.1"}


@pytest.fixture(scope="module")
def trusted_server(start_caddy):
    """Both bridges behind a server that trusts 127.0.0.1 (a TLS-terminating
    load balancer, in production)."""
    sites = ("http://:@PORT0@ {\n" + python_block("rawapp:app", RAW_APP_DIR, venv=False) + "\n}\n"
             "http://:@PORT1@ {\n" + asgi_block("asgiapp:app", ASGI_RAW_DIR) + "\n}\n")
    srv = start_caddy("trusted", sites=sites, nports=2,
                      global_extra="\tservers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}")
    yield srv
    srv.stop()


@pytest.mark.parametrize("index,view", [(0, wsgi_view), (1, asgi_view)], ids=["wsgi", "asgi"])
def test_trusted_proxy_is_believed(trusted_server, index, view):
    got = view(trusted_server.ports[index], SPOOF)
    assert got == {"for": "6.6.6.6, 127.0.0.1", "proto": "https", "host": "evil.example",
                   "scheme": "https", "client": "6.6.6.6"}
