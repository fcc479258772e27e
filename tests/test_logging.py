"""print(), sys.stderr and wsgi.errors output ends up in Caddy's log."""

import uuid

import httpx


def test_print_and_wsgi_errors_in_log(raw_server):
    ident = uuid.uuid4().hex[:12]
    mark = raw_server.log_mark()
    r = httpx.get(raw_server.url(f"/print?id={ident}"), timeout=10)
    assert r.status_code == 200
    assert r.text == "printed"
    raw_server.wait_for_log(
        f"print-flush-marker-{ident}",
        f"wsgi-errors-marker-{ident}",
        f"wsgi-errors-lines-{ident}-a",
        f"wsgi-errors-lines-{ident}-b",
        since=mark,
    )


def test_unflushed_print_reaches_log(raw_server):
    """A plain print() (no flush=True) must not sit in a buffer forever."""
    ident = uuid.uuid4().hex[:12]
    mark = raw_server.log_mark()
    assert httpx.get(raw_server.url(f"/print?id={ident}"), timeout=10).status_code == 200
    raw_server.wait_for_log(f"print-marker-{ident}", since=mark, timeout=5)


def test_sys_stderr_in_log(raw_server):
    ident = uuid.uuid4().hex[:12]
    mark = raw_server.log_mark()
    assert httpx.get(raw_server.url(f"/print?id={ident}"), timeout=10).status_code == 200
    raw_server.wait_for_log(f"stderr-marker-{ident}", since=mark)
