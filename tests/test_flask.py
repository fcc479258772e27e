"""A real Flask app: JSON, forms, multipart uploads, streaming, errors, url_for."""

import hashlib
import json
import random
import time
import uuid

import httpx
import pytest

from conftest import APPS_DIR, python_block, raw_request

FLASK_DIR = APPS_DIR / "flask_app"


@pytest.fixture(scope="module")
def flask_server(start_caddy, venv_dir):
    sites = ("http://:@PORT@ {\n\troute {\n"
             + python_block("main:app", FLASK_DIR, indent="\t\t", threads=4) + "\n\t}\n}\n")
    srv = start_caddy("flask", sites=sites)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def flask_prefix_server(start_caddy, venv_dir):
    sites = ("http://:@PORT@ {\n\thandle_path /prefix/* {\n"
             + python_block("main:app", FLASK_DIR, indent="\t\t") + "\n\t}\n}\n")
    srv = start_caddy("flask-prefix", sites=sites)
    yield srv
    srv.stop()


def test_subprocess_of_sys_executable_sees_the_venv(flask_server, venv_dir):
    r = httpx.get(flask_server.url("/subprocess"), timeout=70)
    assert r.status_code == 200
    assert r.json()["rc"] == 0, r.json()["err"]
    assert r.json()["prefix"] == str(venv_dir)


def test_json_roundtrip(flask_server):
    payload = {"numbers": [1, 2, 3.5], "text": "caf\u00e9 \u2603", "nested": {"a": [None, True]}}
    r = httpx.post(flask_server.url("/json"), json=payload, timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    data = r.json()
    assert data["received"] == payload
    assert data["total"] == 6.5
    assert data["content_type"] == "application/json"


def test_bad_json_is_400(flask_server):
    r = httpx.post(flask_server.url("/json"), content=b"{not json",
                   headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 400


def test_raw_non_ascii_query_bytes(flask_server):
    """Raw bytes in the query (bots send them) reach Flask percent-encoded:
    request.args decodes them (Werkzeug keeps an invalid byte quoted)
    instead of failing with a 500 and a traceback."""
    resp = raw_request(flask_server.port, b"POST /form?q=caf\xc3\xa9&bad=\xff HTTP/1.1\r\nHost: h\r\n"
                                          b"Content-Length: 0\r\nConnection: close\r\n\r\n")
    assert resp.status == 200, resp.raw[:1000]
    assert json.loads(resp.body)["args"] == {"q": ["caf\u00e9"], "bad": ["%FF"]}


def test_form_post(flask_server):
    r = httpx.post(flask_server.url("/form?q=1&q=2"),
                   data={"name": "J\u00fcrgen", "tags": ["a", "b c"], "empty": ""}, timeout=10)
    assert r.status_code == 200
    data = r.json()
    assert data["form"] == {"name": ["J\u00fcrgen"], "tags": ["a", "b c"], "empty": [""]}
    assert data["args"] == {"q": ["1", "2"]}


def test_multipart_upload_large(flask_server):
    big = random.Random(3).randbytes(6 * 1024 * 1024 + 11)
    small = b"tiny file\n"
    r = httpx.post(
        flask_server.url("/upload"),
        data={"note": "hello \u00e9"},
        files={"file": ("big.bin", big, "application/octet-stream"),
               "other": ("small.txt", small, "text/plain")},
        timeout=60,
    )
    assert r.status_code == 200, r.text[:1000]
    data = r.json()
    assert data["fields"] == {"note": "hello \u00e9"}
    assert data["files"]["file"] == {"filename": "big.bin", "content_type": "application/octet-stream",
                                     "size": len(big), "sha256": hashlib.sha256(big).hexdigest()}
    assert data["files"]["other"]["sha256"] == hashlib.sha256(small).hexdigest()
    assert data["files"]["other"]["filename"] == "small.txt"


def test_streaming_response_is_incremental(flask_server):
    n, delay = 5, 0.4
    arrivals = []
    t0 = time.monotonic()
    with httpx.stream("GET", flask_server.url(f"/stream?n={n}&delay={delay}"), timeout=20) as r:
        assert r.status_code == 200
        assert "content-length" not in r.headers
        body = b""
        for chunk in r.iter_raw():
            if chunk:
                arrivals.append((time.monotonic() - t0, chunk))
                body += chunk
    total = time.monotonic() - t0
    assert body == b"".join(f"chunk-{i}\n".encode() for i in range(n))
    first = arrivals[0][0]
    assert total >= (n - 1) * delay * 0.9, f"stream finished too fast ({total:.2f}s)"
    assert first < total / 2, f"first chunk at {first:.2f}s of {total:.2f}s: response was buffered"
    assert first < 1.0
    assert len(arrivals) >= 3, f"body arrived in {len(arrivals)} pieces: not streamed"


def test_exception_500_traceback_and_recovery(flask_server):
    ident = uuid.uuid4().hex[:12]
    mark = flask_server.log_mark()
    r = httpx.get(flask_server.url(f"/raise?id={ident}"), timeout=10)
    assert r.status_code == 500
    assert ident not in r.text
    log = flask_server.wait_for_log(f"flask-boom-{ident}", "Traceback", since=mark)
    assert "ValueError" in log
    r2 = httpx.get(flask_server.url("/hello-world"), timeout=10)
    assert r2.status_code == 200
    assert r2.text == "Hello world!"


def test_url_for_at_root(flask_server):
    data = httpx.get(flask_server.url("/urls"), timeout=10).json()
    assert data["hello"] == "/hello-world"
    assert data["hello_external"] == f"http://127.0.0.1:{flask_server.port}/hello-world"
    assert data["script_root"] == ""
    assert data["path"] == "/urls"
    assert data["remote_addr"] == "127.0.0.1"


def test_url_for_under_handle_path(flask_prefix_server):
    port = flask_prefix_server.port
    data = httpx.get(flask_prefix_server.url("/prefix/urls?x=1"), timeout=10).json()
    assert data["hello"] == "/prefix/hello-world"
    assert data["hello_external"] == f"http://127.0.0.1:{port}/prefix/hello-world"
    assert data["script_root"] == "/prefix"
    assert data["path"] == "/urls"
    assert data["full_path"] == "/urls?x=1"
    assert data["url"] == f"http://127.0.0.1:{port}/prefix/urls?x=1"


def test_redirect_under_handle_path(flask_prefix_server):
    r = httpx.get(flask_prefix_server.url("/prefix/go"), timeout=10)
    assert r.status_code == 302
    assert r.headers["location"] == "/prefix/hello-world"
    r2 = httpx.get(flask_prefix_server.url("/prefix/go"), timeout=10, follow_redirects=True)
    assert r2.status_code == 200
    assert r2.text == "Hello world!"


def test_session_cookie_roundtrip(flask_server):
    with httpx.Client(timeout=10) as c:
        assert c.get(flask_server.url("/session/set?v=s3cr%C3%A9t")).text == "stored"
        assert "session" in c.cookies
        assert c.get(flask_server.url("/session/get")).text == "s3cr\u00e9t"
    assert httpx.get(flask_server.url("/session/get"), timeout=10).text == "<none>"


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH"])
def test_methods(flask_server, method):
    r = httpx.request(method, flask_server.url("/method"), timeout=10,
                      content=b"payload" if method not in ("GET", "DELETE") else None)
    assert r.status_code == 200
    assert r.json()["method"] == method
    if method not in ("GET", "DELETE"):
        assert r.json()["body"] == "payload"


FLASK_FILE = hashlib.sha256(b"flask file").digest() * (1 << 15)  # main.FILE_DATA


def test_send_file_whole_ranged_conditional_and_head(flask_server):
    """send_file goes through wsgi.file_wrapper (sent by Go from the file once
    the thread is free): the whole file, a Range (206), a suffix range, a
    conditional GET (304) and HEAD, as Werkzeug serves them under gunicorn."""
    with httpx.Client(timeout=30) as c:
        r = c.get(flask_server.url("/file"))
        assert r.status_code == 200
        assert r.content == FLASK_FILE
        assert r.headers["content-length"] == str(len(FLASK_FILE))
        assert r.headers["accept-ranges"] == "bytes"
        etag = r.headers["etag"]

        r = c.get(flask_server.url("/file"), headers={"Range": "bytes=1000-1999"})
        assert r.status_code == 206
        assert r.content == FLASK_FILE[1000:2000]
        assert r.headers["content-range"] == f"bytes 1000-1999/{len(FLASK_FILE)}"

        r = c.get(flask_server.url("/file"), headers={"Range": "bytes=-100"})
        assert r.status_code == 206 and r.content == FLASK_FILE[-100:]

        r = c.get(flask_server.url("/file"), headers={"If-None-Match": etag})
        assert r.status_code == 304 and r.content == b""

        r = c.head(flask_server.url("/file"))
        assert r.status_code == 200 and r.content == b""
        assert r.headers["content-length"] == str(len(FLASK_FILE))

        # The connection still carries the next request whole.
        assert c.get(flask_server.url("/hello-world")).text == "Hello world!"


def test_send_file_to_many_clients_at_once(flask_server):
    """More downloads than threads, each read in full."""
    from concurrent.futures import ThreadPoolExecutor

    def one(_):
        with httpx.Client(timeout=60) as c:
            r = c.get(flask_server.url("/file"))
            return r.status_code, hashlib.sha256(r.content).hexdigest()

    want = hashlib.sha256(FLASK_FILE).hexdigest()
    with ThreadPoolExecutor(12) as ex:
        assert list(ex.map(one, range(24))) == [(200, want)] * 24
