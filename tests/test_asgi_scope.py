"""The ASGI 3.0 HTTP scope built by the bridge (checked against the ASGI spec)."""

import json
import shutil
import ssl
import subprocess

import httpx
import pytest

from conftest import ASGI_RAW_DIR, asgi_block, decode_scope_value, raw_request, tls_site


def get_scope(url, **kw):
    r = httpx.request(kw.pop("method", "GET"), url, timeout=15, **kw)
    assert r.status_code == 200, (r.status_code, r.text[:2000])
    data = r.json()
    return decode_scope_value(data["scope"]), data["types"]


def raw_scope(port, request: bytes):
    resp = raw_request(port, request)
    assert resp.status == 200, resp.raw[:2000]
    data = json.loads(resp.body)
    return decode_scope_value(data["scope"]), data["types"]


def header_values(scope, name: bytes):
    return [v for k, v in scope["headers"] if k == name]


# ---------------------------------------------------------------- basics


def test_basic_scope(asgi_server):
    scope, types = get_scope(asgi_server.url("/scope/some/path?x=1&y=%20z"))
    assert scope["type"] == "http"
    # 2.3, as uvicorn says: at 2.4 Starlette stops listening for the client
    # leaving a StreamingResponse (test_asgi_fastapi).
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.3"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/scope/some/path"
    assert scope["raw_path"] == b"/scope/some/path"
    assert scope["query_string"] == b"x=1&y=%20z"
    assert scope["root_path"] == ""
    assert types["raw_path"] == "bytes"
    assert types["query_string"] == "bytes"
    assert types["path"] == "str"
    assert types["root_path"] == "str"
    assert types["headers"] in ("list", "tuple")


def test_client_and_server(asgi_server):
    scope, _ = get_scope(asgi_server.url("/scope"))
    client, server = list(scope["client"]), list(scope["server"])
    assert client[0] == "127.0.0.1"
    assert isinstance(client[1], int) and 0 < client[1] < 65536
    assert server == ["127.0.0.1", asgi_server.port]
    assert isinstance(server[1], int)


def test_scope_fields_are_exact_when_they_repeat_and_differ(start_caddy):
    """The bridge reuses the bytes of header names and values, raw paths and
    query strings it has seen before, and the server address of the last
    request; fields that differ only in their middle bytes (which share a
    cache slot), and a server address that changes between requests (one app
    behind two listeners), must still each arrive exactly as sent."""
    block = asgi_block("asgiapp:app", ASGI_RAW_DIR, indent="\t")
    srv = start_caddy("scope-cache", sites="http://:@PORT0@, http://:@PORT1@ {\n" + block + "\n}\n", nports=2)
    try:
        with httpx.Client(timeout=15) as client:
            for i in range(42):
                mid = "%02d" % (i % 7)
                port = srv.ports[i % 2]
                value = "aaaaaaaa-" + mid + "-bbbbbbbb"
                name = "x-probe-aaaaaaaa-" + mid + "-bbbbbbbb"
                url = "http://127.0.0.1:%d/scope/aaaaaaaa-%s-bbbbbbbb?q=aaaaaaaa-%s-bbbbbbbb" % (port, mid, mid)
                r = client.get(url, headers={name: value, "x-same": "same" * (i % 3)})
                assert r.status_code == 200, r.text[:2000]
                scope = decode_scope_value(r.json()["scope"])
                probes = [(k, v) for k, v in scope["headers"] if k.startswith(b"x-probe")]
                assert probes == [(name.encode(), value.encode())]
                assert header_values(scope, b"x-same") == [b"same" * (i % 3)]
                assert scope["raw_path"] == ("/scope/aaaaaaaa-%s-bbbbbbbb" % mid).encode()
                assert scope["query_string"] == ("q=aaaaaaaa-%s-bbbbbbbb" % mid).encode()
                assert list(scope["server"]) == ["127.0.0.1", port]
    finally:
        srv.stop()


def test_client_port_matches_socket(asgi_server):
    ports = {}

    def hook(sock):
        ports["local"] = sock.getsockname()[1]

    resp = raw_request(asgi_server.port, b"GET /scope HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
                       sock_hook=hook)
    scope = decode_scope_value(json.loads(resp.body)["scope"])
    assert list(scope["client"]) == ["127.0.0.1", ports["local"]]


def test_no_query_string_is_empty_bytes(asgi_server):
    scope, _ = get_scope(asgi_server.url("/scope/plain"))
    assert scope["query_string"] == b""
    assert scope["raw_path"] == b"/scope/plain"


def test_path_is_percent_decoded_utf8_raw_path_is_not(asgi_server):
    scope, _ = raw_scope(asgi_server.port,
                         b"GET /scope/caf%C3%A9%20x%2Fy/%E2%98%83?q=%C3%A9&r=a+b HTTP/1.1\r\n"
                         b"Host: h\r\nConnection: close\r\n\r\n")
    assert scope["path"] == "/scope/caf\u00e9 x/y/\u2603"
    assert scope["raw_path"] == b"/scope/caf%C3%A9%20x%2Fy/%E2%98%83"
    assert scope["query_string"] == b"q=%C3%A9&r=a+b"


@pytest.mark.parametrize("target, path, raw_path, query", [
    ("/scope/f#frag", "/scope/f", b"/scope/f", b""),
    ("/scope/f?a=1#frag", "/scope/f", b"/scope/f", b"a=1"),
    ("/scope/f#frag?a=1", "/scope/f", b"/scope/f", b""),
    ("/scope/f%23x", "/scope/f#x", b"/scope/f%23x", b""),  # an encoded # is part of the path
])
def test_fragment_in_the_target_is_dropped(asgi_server, target, path, raw_path, query):
    # Clients should not send one; uvicorn drops it when they do.
    scope, _ = raw_scope(asgi_server.port,
                         f"GET {target} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".encode())
    assert (scope["path"], scope["raw_path"], scope["query_string"]) == (path, raw_path, query)


@pytest.mark.parametrize("request_line, query", [
    ("GET http://example.test HTTP/1.1", b""),
    ("GET http://example.test?x=1 HTTP/1.1", b"x=1"),
])
def test_a_target_without_a_path_is_the_root(asgi_server, request_line, query):
    """An absolute-form target with no path means "/" (RFC 9110), as
    reverse_proxy passes it on (it was path "." and root_path ".")."""
    scope, _ = raw_scope(asgi_server.port,
                         f"{request_line}\r\nHost: example.test\r\nConnection: close\r\n\r\n".encode())
    assert (scope["root_path"], scope["path"], scope["raw_path"], scope["query_string"]) == ("", "/", b"/", query)


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND"])
def test_methods(asgi_server, method):
    scope, _ = get_scope(asgi_server.url("/scope/m"), method=method,
                         content=b"abc" if method in ("POST", "PUT", "PATCH") else None)
    assert scope["method"] == method


# ---------------------------------------------------------------- headers


def test_headers_are_lowercase_bytes_pairs_with_host(asgi_server):
    scope, _ = raw_scope(asgi_server.port,
                         b"GET /scope HTTP/1.1\r\nHost: example.test:1234\r\nX-Mixed-CASE: Value-Kept\r\n"
                         b"Accept: text/plain\r\nConnection: close\r\n\r\n")
    for pair in scope["headers"]:
        assert len(pair) == 2
        name, value = pair
        assert isinstance(name, bytes) and isinstance(value, bytes), pair
        assert name == name.lower(), pair
    assert header_values(scope, b"host") == [b"example.test:1234"]
    assert header_values(scope, b"x-mixed-case") == [b"Value-Kept"]
    assert header_values(scope, b"accept") == [b"text/plain"]


def test_no_host_header_means_no_host_pair(asgi_server):
    """HTTP/1.0 allows a request without Host: no ("host", "") pair then."""
    scope, _ = raw_scope(asgi_server.port, b"GET /scope HTTP/1.0\r\n\r\n")
    assert header_values(scope, b"host") == []
    assert list(scope["server"]) == ["127.0.0.1", asgi_server.port]


def test_chunked_upload_keeps_transfer_encoding(asgi_server):
    """Go takes Transfer-Encoding out of the request headers; the scope has
    every header the client sent, as under uvicorn."""
    scope, _ = raw_scope(asgi_server.port,
                         b"POST /scope HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                         b"Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    assert header_values(scope, b"transfer-encoding") == [b"chunked"]


def test_raw_non_ascii_query_bytes_are_percent_encoded(asgi_server):
    """The ASGI spec has query_string percent-encoded; Go accepts raw
    non-ASCII bytes there (behind Caddy, uvicorn answers 400), which would
    make Starlette's URL() fail to decode them."""
    scope, _ = raw_scope(asgi_server.port,
                         b"GET /scope?b=\xc3\xa9&c=\xff HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert scope["query_string"] == b"b=%C3%A9&c=%FF"


def test_trailer_header_is_kept(asgi_server):
    """Likewise Trailer (Go keeps it as the keys of r.Trailer)."""
    scope, _ = raw_scope(asgi_server.port,
                         b"POST /scope HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                         b"Trailer: X-Checksum\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n"
                         b"X-Checksum: abc\r\n\r\n")
    assert header_values(scope, b"trailer") == [b"X-Checksum"]


def test_duplicate_headers_kept_in_order(asgi_server):
    scope, _ = raw_scope(asgi_server.port,
                         b"GET /scope HTTP/1.1\r\nHost: h\r\nX-Dup: one\r\nX-Other: o\r\nX-Dup: two\r\n"
                         b"x-dup: three\r\nConnection: close\r\n\r\n")
    # (the relative order of *different* names is not preserved by Go's
    # net/http, only the order of one name's values)
    assert header_values(scope, b"x-dup") == [b"one", b"two", b"three"]
    assert header_values(scope, b"x-other") == [b"o"]


def test_non_ascii_header_value_is_raw_bytes(asgi_server):
    scope, _ = raw_scope(asgi_server.port,
                         b"GET /scope HTTP/1.1\r\nHost: h\r\nX-Latin: caf\xc3\xa9\r\nConnection: close\r\n\r\n")
    assert header_values(scope, b"x-latin") == [b"caf\xc3\xa9"]


def test_content_headers_present(asgi_server):
    scope, _ = get_scope(asgi_server.url("/scope"), method="POST", content=b"hello",
                         headers={"Content-Type": "application/x-test"})
    assert header_values(scope, b"content-type") == [b"application/x-test"]
    assert header_values(scope, b"content-length") == [b"5"]


# ---------------------------------------------------------------- versions


def test_http_1_0(asgi_server):
    scope, _ = raw_scope(asgi_server.port, b"GET /scope/old HTTP/1.0\r\nHost: h\r\n\r\n")
    assert scope["http_version"] == "1.0"
    assert "http.response.early_hint" not in scope["extensions"]
    assert "http.response.pathsend" in scope["extensions"]


def test_http_2_h2c(asgi_server):
    pytest.importorskip("h2", reason="h2 package (httpx[http2]) not installed")
    with httpx.Client(http1=False, http2=True, timeout=15) as client:
        r = client.get(asgi_server.url("/scope/h2?a=b"))
        assert r.http_version == "HTTP/2"
        assert r.status_code == 200
        scope = decode_scope_value(r.json()["scope"])
    assert scope["http_version"] == "2"
    assert scope["path"] == "/scope/h2"
    assert scope["query_string"] == b"a=b"
    assert scope["scheme"] == "http"
    # HTTP/2 has no Host header; the :authority pseudo-header is exposed as host
    assert header_values(scope, b"host") == [f"127.0.0.1:{asgi_server.port}".encode()]
    assert "http.response.early_hint" in scope["extensions"]


# ---------------------------------------------------------------- extensions


def test_extensions_default(asgi_server):
    scope, _ = get_scope(asgi_server.url("/scope"))
    ext = scope["extensions"]
    assert "http.response.pathsend" in ext
    assert "http.response.early_hint" in ext
    assert "http.response.trailers" not in ext
    assert "tls" not in ext


@pytest.mark.parametrize("te", ["trailers", "deflate, trailers", "Trailers"])
def test_trailers_extension_only_with_te_trailers(asgi_server, te):
    scope, _ = get_scope(asgi_server.url("/scope"), headers={"TE": te})
    assert "http.response.trailers" in scope["extensions"]
    scope, _ = get_scope(asgi_server.url("/scope"), headers={"TE": "deflate"})
    assert "http.response.trailers" not in scope["extensions"]


# ---------------------------------------------------------------- root_path


def test_root_path_under_handle_path(asgi_server):
    scope, _ = raw_scope(asgi_server.port,
                         b"GET /prefix/scope/a%20b?k=v HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert scope["root_path"] == "/prefix"
    assert scope["path"] == "/prefix/scope/a b"
    assert scope["path"].startswith(scope["root_path"])
    assert scope["raw_path"] == b"/prefix/scope/a%20b"
    assert scope["query_string"] == b"k=v"


def test_routes_work_under_prefix(asgi_server):
    r = httpx.get(asgi_server.url("/prefix/hello"), timeout=10)
    assert r.status_code == 200
    assert r.text == "hello asgi"


# ---------------------------------------------------------------- state


def test_state_from_lifespan_startup(asgi_server):
    scope, types = get_scope(asgi_server.url("/scope"))
    assert types["state"] == "dict"
    assert scope["state"] == {"startup": "raw-startup-done", "counter": 0}


def test_lifespan_scope_names_the_lifespan_spec_version(asgi_server):
    r = httpx.get(asgi_server.url("/lifespan-log"), timeout=10)
    assert r.json()["asgi"] == {"version": "3.0", "spec_version": "2.0"}


def test_state_is_a_copy_per_request(asgi_server):
    first = httpx.get(asgi_server.url("/state/mutate?id=first"), timeout=10).json()
    assert first["before"] == {"startup": "raw-startup-done", "counter": 0}
    assert first["after"] == {"counter": 1, "mutated_by": "first"}
    second = httpx.get(asgi_server.url("/state/mutate?id=second"), timeout=10).json()
    assert second["before"] == {"startup": "raw-startup-done", "counter": 0}, \
        "mutating scope['state'] in one request leaked into the next"
    scope, _ = get_scope(asgi_server.url("/scope"))
    assert scope["state"] == {"startup": "raw-startup-done", "counter": 0}


# ---------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def tls_server(start_caddy, tmp_path_factory):
    """HTTPS on 127.0.0.1 with a self-signed certificate made by openssl."""
    sites = tls_site(tmp_path_factory, "asgi-tls-cert", asgi_block("asgiapp:app", ASGI_RAW_DIR))
    srv = start_caddy("asgi-tls", sites=sites)
    srv.base_url = f"https://127.0.0.1:{srv.port}"
    yield srv
    srv.stop()


def test_https_scheme_and_tls_extension(tls_server):
    with httpx.Client(verify=False, timeout=15) as c:
        r = c.get(f"{tls_server.base_url}/scope/secure?x=1")
    assert r.status_code == 200, r.text[:2000]
    scope = decode_scope_value(r.json()["scope"])
    assert scope["scheme"] == "https"
    assert scope["path"] == "/scope/secure"
    assert scope["http_version"] == "1.1"
    assert list(scope["server"]) == ["127.0.0.1", tls_server.port]
    tls = scope["extensions"].get("tls")
    assert isinstance(tls, dict), scope["extensions"]
    assert isinstance(tls["tls_version"], int) and tls["tls_version"] in (0x0303, 0x0304), tls
    assert isinstance(tls["cipher_suite"], int) and tls["cipher_suite"] > 0, tls
    assert tls.get("client_cert_chain", []) in ([], ()), tls


def test_https_http2(tls_server):
    pytest.importorskip("h2", reason="h2 package (httpx[http2]) not installed")
    with httpx.Client(verify=False, http2=True, timeout=15) as c:
        r = c.get(f"{tls_server.base_url}/scope/h2")
    assert r.http_version == "HTTP/2"
    scope = decode_scope_value(r.json()["scope"])
    assert scope["http_version"] == "2"
    assert scope["scheme"] == "https"
    assert isinstance(scope["extensions"]["tls"]["tls_version"], int)


@pytest.fixture(scope="module")
def mtls_server(start_caddy, tmp_path_factory):
    """HTTPS that asks for (and does not verify) a client certificate; the
    client presents a leaf and its CA, a chain of two."""
    openssl = shutil.which("openssl")
    if not openssl:
        pytest.skip("openssl CLI not available to make test certificates")
    d = tmp_path_factory.mktemp("asgi-mtls-cert")

    def run(*args):
        res = subprocess.run([openssl, *args], capture_output=True, text=True, timeout=30, cwd=d)
        assert res.returncode == 0, res.stderr

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "server.key", "-out", "server.pem", "-days", "2",
        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1")
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Test CA")
    run("req", *ec, "-keyout", "client.key", "-out", "client.csr", "-subj", "/O=Snake Test/CN=test-client")
    run("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "client.pem", "-days", "2")
    (d / "chain.pem").write_text((d / "client.pem").read_text() + (d / "ca.pem").read_text())
    # No host in the address: a policy for 127.0.0.1 would match only
    # connections whose SNI names it, and a client gives none for an IP.
    sites = (f"https://:@PORT@ {{\n\tbind 127.0.0.1\n\ttls {d / 'server.pem'} {d / 'server.key'} {{\n"
             "\t\tclient_auth {\n\t\t\tmode request\n\t\t}\n\t}\n"
             + asgi_block("asgiapp:app", ASGI_RAW_DIR) + "\n}\n")
    # Caddy turns strict_sni_host on with client_auth, and a client that
    # connects to an IP address sends no SNI.
    srv = start_caddy("asgi-mtls", sites=sites, global_extra="servers {\n\t\tstrict_sni_host insecure_off\n\t}")
    srv.base_url = f"https://127.0.0.1:{srv.port}"
    srv.certs = d
    yield srv
    srv.stop()


def test_client_certificate_chain_and_name(mtls_server):
    d = mtls_server.certs
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.load_cert_chain(d / "chain.pem", d / "client.key")
    with httpx.Client(verify=ctx, timeout=15) as c:
        r = c.get(f"{mtls_server.base_url}/scope/mtls")
    assert r.status_code == 200, r.text[:2000]
    tls = decode_scope_value(r.json()["scope"])["extensions"]["tls"]
    chain = tls["client_cert_chain"]
    # One PEM string per certificate, leaf first, each whole with its END line.
    assert [pem.strip() for pem in chain] == [(d / "client.pem").read_text().strip(),
                                              (d / "ca.pem").read_text().strip()], chain
    assert all(pem.endswith("-----END CERTIFICATE-----\n") for pem in chain), chain
    assert tls["client_cert_name"] == "CN=test-client,O=Snake Test", tls
    assert tls["client_cert_error"] is None and tls["server_cert"] is None, tls


def test_no_client_certificate_has_no_name(mtls_server):
    with httpx.Client(verify=False, timeout=15) as c:
        r = c.get(f"{mtls_server.base_url}/scope/anon")
    tls = decode_scope_value(r.json()["scope"])["extensions"]["tls"]
    assert tls["client_cert_chain"] == [] and tls["client_cert_name"] is None, tls
