"""print(), sys.stderr and wsgi.errors output ends up in Caddy's log."""

import re
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


def _entry(log, needle):
    """The log entry (first line and continuation lines) containing needle."""
    lines = re.sub(r"\x1b\[[0-9;]*m", "", log).splitlines()  # no colours
    start = next(i for i, line in enumerate(lines) if needle in line)
    end = start + 1
    while end < len(lines) and not re.match(r"\d{4}/\d\d/\d\d ", lines[end]):
        end += 1
    return lines[start:end]


def test_logging_records_keep_their_level_and_traceback(raw_server):
    """A logging record is one entry at its own level: an ERROR written to
    sys.stderr is an error, a WARNING written to wsgi.errors a warning, and
    a traceback stays with its message instead of one entry per line."""
    ident = uuid.uuid4().hex[:12]
    mark = raw_server.log_mark()
    assert httpx.get(raw_server.url(f"/logging?id={ident}"), timeout=10).text == "logged"
    log = raw_server.wait_for_log(f"log-errors-stream-warning-{ident}", since=mark)
    for needle, level in [(f"log-info-{ident}", "INFO"), (f"log-error-{ident}", "ERROR"),
                          (f"log-exception-{ident}", "ERROR"), (f"log-errors-stream-warning-{ident}", "WARN")]:
        first = _entry(log, needle)[0]
        assert "\t" + level + "\t" in first, (needle, first)
    exc = _entry(log, f"log-exception-{ident}")
    assert exc[1].startswith("Traceback (most recent call last)"), exc
    assert exc[-1] == "ZeroDivisionError: division by zero", exc
