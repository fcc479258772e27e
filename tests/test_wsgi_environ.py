"""The WSGI environ built by the bridge, checked against PEP 3333 / CGI rules."""

import json

import httpx
import pytest

from conftest import RAW_APP_DIR, python_block, raw_request


def get_env(url, **kw):
    r = httpx.request(kw.pop("method", "GET"), url, timeout=15, **kw)
    assert r.status_code == 200, (r.status_code, r.text[:2000])
    return r.json()


def raw_env(port, request: bytes, sock_hook=None):
    resp = raw_request(port, request, sock_hook=sock_hook)
    assert resp.status == 200, resp.raw[:2000]
    return json.loads(resp.body)


# ---------------------------------------------------------------- basics


def test_basic_cgi_variables(raw_server):
    data = get_env(raw_server.url("/env/some/path?x=1"))
    env = data["environ"]
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/env/some/path"
    assert env["QUERY_STRING"] == "x=1"
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(raw_server.port)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["HTTP_HOST"] == f"127.0.0.1:{raw_server.port}"
    assert env["REMOTE_PORT"].isdigit()


def test_root_path(raw_server):
    env = get_env(raw_server.url("/"))["environ"]
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/"
    assert env.get("QUERY_STRING", "") == ""


def test_wsgi_keys(raw_server):
    wsgi = get_env(raw_server.url("/env"))["wsgi"]
    assert wsgi["version"] == [1, 0]
    assert wsgi["version_type"] == "tuple"
    assert wsgi["url_scheme"] == "http"
    assert wsgi["multithread"] is True
    assert wsgi["multiprocess"] is False
    assert wsgi["run_once"] is False
    assert wsgi["input_methods"] == {"read": True, "readline": True, "readlines": True, "__iter__": True}
    assert wsgi["errors_methods"] == {"write": True, "writelines": True, "flush": True}
    for key in ("wsgi.version", "wsgi.url_scheme", "wsgi.input", "wsgi.errors",
                "wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once"):
        assert key in wsgi["keys"]


def test_all_values_native_latin1_str(raw_server):
    data = get_env(raw_server.url("/env/caf%C3%A9?q=%E2%82%AC"),
                   headers={"X-Some": "thing", "Cookie": "a=b"})
    assert data["non_str"] == [], f"non-str environ entries: {data['non_str']}"
    assert data["not_latin1"] == [], f"values outside latin-1: {data['not_latin1']}"


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND"])
def test_request_method(raw_server, method):
    r = httpx.request(method, raw_server.url("/env"), timeout=15)
    assert r.status_code == 200
    assert r.json()["environ"]["REQUEST_METHOD"] == method


# ---------------------------------------------------------------- paths and query


def test_path_info_percent_decoded_as_latin1_bytes(raw_server):
    env = raw_env(raw_server.port,
                  b"GET /env/caf%C3%A9 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")["environ"]
    # the UTF-8 bytes c3 a9, each one latin-1 character
    assert env["PATH_INFO"] == "/env/caf\xc3\xa9"
    assert env["SCRIPT_NAME"] == ""


def test_path_info_space_and_reserved(raw_server):
    env = raw_env(raw_server.port,
                  b"GET /env/a%20b/%7Euser HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")["environ"]
    assert env["PATH_INFO"] == "/env/a b/~user"


def test_query_string_raw_not_decoded(raw_server):
    qs = "a=1&b=caf%C3%A9&c=%20+x&d=%2F&e"
    env = raw_env(raw_server.port,
                  f"GET /env?{qs} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())["environ"]
    assert env["QUERY_STRING"] == qs
    assert env["PATH_INFO"] == "/env"


def test_query_string_raw_non_ascii_bytes_are_percent_encoded(raw_server):
    """Go accepts raw non-ASCII bytes in the target (behind Caddy, gunicorn
    answers 400); QUERY_STRING gets them percent-encoded, so an app decoding
    it as UTF-8 (Werkzeug) cannot fail on an invalid byte. REQUEST_URI stays
    as sent."""
    env = raw_env(raw_server.port,
                  b"GET /env?b=\xc3\xa9&c=\xff&d=%C3%A9 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")["environ"]
    assert env["QUERY_STRING"] == "b=%C3%A9&c=%FF&d=%C3%A9"
    assert env["REQUEST_URI"] == "/env?b=\xc3\xa9&c=\xff&d=%C3%A9"


@pytest.mark.parametrize("target, path, query", [
    ("/env/f#frag", "/env/f", ""),
    ("/env/f?a=1#frag", "/env/f", "a=1"),
    ("/env/f#frag?a=1", "/env/f", ""),
    ("/env/f%23x", "/env/f#x", ""),  # an encoded # is part of the path
])
def test_fragment_in_the_target_is_dropped(raw_server, target, path, query):
    # Clients should not send one; gunicorn and uvicorn drop it when they do.
    env = raw_env(raw_server.port,
                  f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())["environ"]
    assert (env["PATH_INFO"], env["QUERY_STRING"]) == (path, query)
    assert env["REQUEST_URI"] == target  # as sent
    assert env["RAW_URI"] == target  # gunicorn's name


@pytest.mark.parametrize("request_line, query", [
    ("GET http://example.test HTTP/1.1", ""),
    ("GET http://example.test?x=1 HTTP/1.1", "x=1"),
    ("CONNECT example.test:443 HTTP/1.1", ""),
])
def test_a_target_without_a_path_is_the_root(raw_server, request_line, query):
    """An absolute-form target with no path means "/" (RFC 9110), as
    reverse_proxy passes it on. It was SCRIPT_NAME "." and PATH_INFO "": Flask
    redirected to "/./", which is a 404."""
    env = raw_env(raw_server.port,
                  f"{request_line}\r\nHost: example.test\r\nConnection: close\r\n\r\n".encode())["environ"]
    assert (env["SCRIPT_NAME"], env["PATH_INFO"], env["QUERY_STRING"]) == ("", "/", query)
    assert env["RAW_URI"] == request_line.split(" ")[1]  # as sent


# ---------------------------------------------------------------- body-related variables


def test_two_content_types_are_refused(raw_server):
    """The environ has one CONTENT_TYPE, and which of two the client meant
    is a guess: 400 before the app runs, as gunicorn answers (it kept the
    first)."""
    resp = raw_request(raw_server.port, b"POST /env HTTP/1.1\r\nHost: x\r\nContent-Type: a/b\r\n"
                                        b"Content-Type: c/d\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
    assert resp.status == 400
    assert b"CONTENT_TYPE" not in resp.body


def test_content_type_and_length(raw_server):
    data = get_env(raw_server.url("/env"), method="POST", content=b"hello",
                   headers={"Content-Type": "application/x-test; charset=latin-1"})
    env = data["environ"]
    assert env["CONTENT_TYPE"] == "application/x-test; charset=latin-1"
    assert env["CONTENT_LENGTH"] == "5"
    assert data["body_len"] == 5
    # CGI: these two are never duplicated as HTTP_ variables
    assert "HTTP_CONTENT_TYPE" not in env
    assert "HTTP_CONTENT_LENGTH" not in env


def test_no_body_content_length_empty_or_absent(raw_server):
    env = get_env(raw_server.url("/env"))["environ"]
    assert env.get("CONTENT_LENGTH", "") in ("", "0")
    assert env.get("CONTENT_TYPE", "") == ""
    assert "HTTP_CONTENT_LENGTH" not in env


def test_chunked_body_input_terminated(raw_server):
    payload = [b"abc" * 1000, b"defg" * 777, b"z"]

    def gen():
        yield from payload

    data = get_env(raw_server.url("/env"), method="POST", content=gen(),
                   headers={"Content-Type": "application/octet-stream"})
    assert data["wsgi"]["input_terminated"] is True
    assert data["body_len"] == sum(map(len, payload))
    assert data["environ"].get("CONTENT_LENGTH", "") == ""
    # Go takes Transfer-Encoding out of the request headers; PEP 3333 wants
    # it (gunicorn passes it, and apps test it to see that a body comes).
    assert data["environ"]["HTTP_TRANSFER_ENCODING"] == "chunked"


def test_trailer_header_reaches_the_app(raw_server):
    """Go moves the Trailer header out of the request headers too; gunicorn
    passes it as HTTP_TRAILER."""
    env = raw_env(raw_server.port,
                  b"POST /env HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                  b"Trailer: X-Checksum\r\nConnection: close\r\n\r\n"
                  b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n")["environ"]
    assert env["HTTP_TRAILER"] == "X-Checksum"
    assert "HTTP_TRAILER" not in get_env(raw_server.url("/env"))["environ"]


def test_server_software(raw_server):
    """RFC 3875 4.1.17 (gunicorn sets its own name)."""
    assert get_env(raw_server.url("/env"))["environ"]["SERVER_SOFTWARE"] == "caddysnake"


# ---------------------------------------------------------------- protocol / client


def test_server_protocol_http10(raw_server):
    resp = raw_request(raw_server.port, b"GET /env HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    assert resp.status == 200, resp.raw[:500]
    env = json.loads(resp.body)["environ"]
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"


def test_server_protocol_of_a_later_http1_minor_is_http11(raw_server):
    """Go accepts "HTTP/1.2" and answers it as HTTP/1.1: the app hears the
    version it is answered in (the ASGI scope says "1.1" too)."""
    resp = raw_request(raw_server.port, b"GET /env HTTP/1.2\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert resp.status == 200, resp.raw[:500]
    assert resp.raw.startswith(b"HTTP/1.1 200")
    assert json.loads(resp.body)["environ"]["SERVER_PROTOCOL"] == "HTTP/1.1"


def test_no_host_header_means_no_http_host(raw_server):
    """HTTP/1.0 allows a request without Host (health checks send such):
    then HTTP_HOST is absent, not empty (Django would answer 400 for an
    empty one), and SERVER_NAME/SERVER_PORT still name the server."""
    env = raw_env(raw_server.port, b"GET /env HTTP/1.0\r\n\r\n")["environ"]
    assert "HTTP_HOST" not in env
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("127.0.0.1", str(raw_server.port))


def test_server_name_is_the_listener_not_the_host_header(raw_server):
    """SERVER_NAME/SERVER_PORT are where the connection arrived (RFC 3875,
    gunicorn, uvicorn's scope["server"]); the client's Host is HTTP_HOST."""
    env = raw_env(raw_server.port, b"GET /env HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
    env = env["environ"]
    assert env["HTTP_HOST"] == "example.com"
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("127.0.0.1", str(raw_server.port))


def test_server_protocol_http2_h2c(raw_server):
    pytest.importorskip("h2", reason="h2 package (httpx[http2]) not installed")
    with httpx.Client(http1=False, http2=True, timeout=15) as client:
        r = client.get(raw_server.url("/env"))
    assert r.http_version == "HTTP/2"
    assert r.status_code == 200
    env = r.json()["environ"]
    assert env["SERVER_PROTOCOL"].startswith("HTTP/2")
    assert env["HTTP_HOST"] == f"127.0.0.1:{raw_server.port}"
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == "/env"


def test_remote_addr_and_port(raw_server):
    ports = []
    env = raw_env(raw_server.port, b"GET /env HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                  sock_hook=lambda s: ports.append(s.getsockname()[1]))["environ"]
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(ports[0])


# ---------------------------------------------------------------- headers


def test_http_headers_mapped(raw_server):
    env = raw_env(raw_server.port, (
        b"GET /env HTTP/1.1\r\nHost: example.test:8080\r\nX-Custom-Header: Value 1\r\n"
        b"Accept: text/plain\r\nUser-Agent: raw-test/1.0\r\nConnection: close\r\n\r\n"))["environ"]
    assert env["HTTP_HOST"] == "example.test:8080"
    assert env["HTTP_X_CUSTOM_HEADER"] == "Value 1"
    assert env["HTTP_ACCEPT"] == "text/plain"
    assert env["HTTP_USER_AGENT"] == "raw-test/1.0"


def test_repeated_headers_joined_with_comma(raw_server):
    env = raw_env(raw_server.port, (
        b"GET /env HTTP/1.1\r\nHost: x\r\nX-Multi: a\r\nX-Multi: b\r\nX-Multi: c d\r\n"
        b"Connection: close\r\n\r\n"))["environ"]
    assert env["HTTP_X_MULTI"] == "a,b,c d"


def test_underscore_header_not_mapped(raw_server):
    env = raw_env(raw_server.port, (
        b"GET /env HTTP/1.1\r\nHost: x\r\nX_Forwarded_For: 6.6.6.6\r\nX_Only_Underscore: 1\r\n"
        b"Connection: close\r\n\r\n"))["environ"]
    assert env["HTTP_X_FORWARDED_FOR"] == "127.0.0.1"  # Caddy's, as behind reverse_proxy
    assert "HTTP_X_ONLY_UNDERSCORE" not in env
    assert not any("6.6.6.6" in v for v in env.values())


def test_underscore_header_cannot_spoof_dash_header(raw_server):
    env = raw_env(raw_server.port, (
        b"GET /env HTTP/1.1\r\nHost: x\r\nX-Real-Ip: 1.2.3.4\r\nX_Real_Ip: 6.6.6.6\r\n"
        b"Connection: close\r\n\r\n"))["environ"]
    assert env["HTTP_X_REAL_IP"] == "1.2.3.4"


def test_header_value_bytes_as_latin1(raw_server):
    env = raw_env(raw_server.port, (
        b"GET /env HTTP/1.1\r\nHost: x\r\nX-Utf8: caf\xc3\xa9\r\nConnection: close\r\n\r\n"))["environ"]
    assert env["HTTP_X_UTF8"] == "caf\xc3\xa9"


def test_environ_strings_are_exact_when_fields_repeat_and_differ(raw_server):
    """The bridge reuses the str of an environ field it has seen before;
    fields that differ only in their middle bytes (which share a cache slot)
    or only in a latin-1 byte must still each arrive exactly as sent, on
    every request, the usual ones included."""
    with httpx.Client(timeout=15) as client:
        for i in range(60):
            mid = "%02d" % (i % 7)
            value = "aaaaaaaa-" + mid + "-bbbbbbbb"
            name = "X-Probe-Aaaaaaaa-" + mid + "-Bbbbbbbb"
            r = client.get(raw_server.url("/env?i=%d" % i), headers={name: value, "X-Same": "same" * (i % 3)})
            env = r.json()["environ"]
            assert env["HTTP_X_PROBE_AAAAAAAA_" + mid + "_BBBBBBBB"] == value
            assert env.get("HTTP_X_SAME", "") == "same" * (i % 3)
            assert env["QUERY_STRING"] == "i=%d" % i
            assert env["REQUEST_METHOD"] == "GET"
            assert [k for k in env if k.startswith("HTTP_X_PROBE")] == ["HTTP_X_PROBE_AAAAAAAA_" + mid + "_BBBBBBBB"]
    for raw in (b"caf\xc3\xa9", b"caf\xe9\xe9"):  # same length, different latin-1 bytes
        env = raw_env(raw_server.port, (
            b"GET /env HTTP/1.1\r\nHost: x\r\nX-Utf8: " + raw + b"\r\nConnection: close\r\n\r\n"))["environ"]
        assert env["HTTP_X_UTF8"] == raw.decode("latin-1")


# ---------------------------------------------------------------- SCRIPT_NAME under prefixes


@pytest.fixture(scope="module")
def prefix_server(start_caddy):
    sites = ("http://:@PORT@ {\n\thandle_path /prefix/* {\n"
             + python_block("rawapp:app", RAW_APP_DIR, venv=False, indent="\t\t") + "\n\t}\n}\n")
    srv = start_caddy("prefix", sites=sites)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def strip_server(start_caddy):
    sites = ("http://:@PORT@ {\n\troute /strip/* {\n\t\turi strip_prefix /strip\n"
             + python_block("rawapp:app", RAW_APP_DIR, venv=False, indent="\t\t") + "\n\t}\n}\n")
    srv = start_caddy("strip", sites=sites)
    yield srv
    srv.stop()


def test_script_name_handle_path(prefix_server):
    env = get_env(prefix_server.url("/prefix/env/x?y=1"))["environ"]
    assert env["SCRIPT_NAME"] == "/prefix"
    assert env["PATH_INFO"] == "/env/x"
    assert env["QUERY_STRING"] == "y=1"


def test_script_name_handle_path_trailing_slash(prefix_server):
    env = get_env(prefix_server.url("/prefix/"))["environ"]
    assert env["SCRIPT_NAME"] == "/prefix"
    assert env["PATH_INFO"] == "/"


def test_script_name_handle_path_encoded(prefix_server):
    env = raw_env(prefix_server.port,
                  b"GET /prefix/caf%C3%A9 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")["environ"]
    assert env["SCRIPT_NAME"] == "/prefix"
    assert env["PATH_INFO"] == "/caf\xc3\xa9"


@pytest.mark.parametrize("target,path", [("/prefix/env/a/%2e%2e/b", "/env/b"), ("/prefix//env/x", "/env/x"),
                                         ("/prefix/./env/x", "/env/x")])
def test_script_name_of_a_path_caddy_cleaned(prefix_server, target, path):
    """Caddy cleans such a path before handle_path strips the prefix; the
    app is still mounted at /prefix, not at "/prefix/env/a/.." or
    "/prefix/" (from which url_for would build "/prefix//static")."""
    env = raw_env(prefix_server.port,
                  f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())["environ"]
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/prefix", path)


def test_script_name_uri_strip_prefix(strip_server):
    env = get_env(strip_server.url("/strip/env/y?z=2"))["environ"]
    assert env["SCRIPT_NAME"] == "/strip"
    assert env["PATH_INFO"] == "/env/y"
    assert env["QUERY_STRING"] == "z=2"
