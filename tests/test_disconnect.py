"""A client that goes away mid-stream: the app's iterable is closed promptly."""

import socket
import time
import uuid

import httpx
import pytest

from conftest import python_block, read_events, read_first_chunk_and_close, wait_until


@pytest.mark.parametrize("kind,event", [("stream", "closed"), ("genstream", "gen-finally")])
def test_disconnect_mid_stream_closes_iterable(raw_server, kind, event):
    ident = uuid.uuid4().hex[:12]
    read_first_chunk_and_close(raw_server.port, f"/close/{kind}?id={ident}&delay=0.02",
                               b"c0;" if kind == "stream" else b"g0;")
    t0 = time.monotonic()

    def closed():
        evs = read_events(raw_server.base_url, ident)
        return evs if f"{event}:{ident}" in evs else None

    evs = wait_until(closed, 5.0, interval=0.1, message=f"{event}:{ident} after client disconnect")
    assert f"timeout:{ident}" not in evs, "the stream ran to its own time limit instead of stopping"
    assert f"started:{ident}" in evs
    assert time.monotonic() - t0 < 5.0
    # the server is fine afterwards
    assert httpx.get(raw_server.url("/hello"), timeout=10).text == "hello world"


def test_many_disconnects_do_not_leak_threads(raw_server):
    """Ten abandoned streams must not eat the 8-thread pool."""
    idents = [uuid.uuid4().hex[:12] for _ in range(10)]
    for ident in idents:
        read_first_chunk_and_close(raw_server.port, f"/close/stream?id={ident}&delay=0.02", b"c0;")

    def all_closed():
        return all(f"closed:{i}" in read_events(raw_server.base_url, i) for i in idents)

    wait_until(all_closed, 8.0, interval=0.2, message="all abandoned streams closed")
    t0 = time.monotonic()
    r = httpx.get(raw_server.url("/hello"), timeout=10)
    assert r.status_code == 200
    assert time.monotonic() - t0 < 2.0


SWALLOW_APP = '''
def app(environ, start_response):
    try:
        environ["wsgi.input"].read()
    except OSError:
        pass  # the client left mid-upload; the app answers anyway
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"answered anyway"]
'''


def test_an_answer_to_a_client_that_left_mid_upload_is_logged_as_499(start_caddy, tmp_path):
    """As reverse_proxy logs it (and the ASGI bridge): not as a 200 that was
    never sent. The app's send raises ClientDisconnected, which the driver
    does not log as the app's error."""
    app_dir = tmp_path / "swallow"
    app_dir.mkdir()
    (app_dir / "swallow.py").write_text(SWALLOW_APP)
    srv = start_caddy("swallow", sites="http://:@PORT@ {\n\tlog\n" + python_block("swallow:app", app_dir, venv=False)
                      + "\n}\n")
    try:
        mark = srv.log_mark()
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        s.sendall(b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n" + b"x" * 20000)
        time.sleep(0.2)
        s.close()
        line = srv.wait_for_log('"uri": "/up"', since=mark)
        assert '"status": 499' in line, line
        assert "error in WSGI app" not in srv.log_since(mark)
        assert httpx.get(srv.url("/again"), timeout=10).text == "answered anyway"
    finally:
        srv.stop()
