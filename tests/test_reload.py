"""`caddy reload` re-imports the app; in-flight requests survive a reload."""

import threading
import time

import httpx
import pytest

from conftest import python_block, wait_until

APP_TEMPLATE = '''
import os
import time

VERSION = {version!r}
HERE = os.path.dirname(os.path.abspath(__file__))


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/slow":
        open(os.path.join(HERE, "slow-started"), "w").close()
        time.sleep(float(environ.get("QUERY_STRING") or "1"))
        body = ("slow done by " + VERSION).encode()
    else:
        body = VERSION.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


def write_app(app_dir, version):
    path = app_dir / "main.py"
    path.write_text(APP_TEMPLATE.format(version=version))


def sites(app_dir, threads=4):
    return "http://:@PORT@ {\n\troute {\n" + python_block("main:app", app_dir, venv=False, threads=threads,
                                                           indent="\t\t") + "\n\t}\n}\n"


@pytest.fixture
def reload_server(start_caddy, tmp_path):
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    write_app(app_dir, "v1")
    srv = start_caddy("reload", sites=sites(app_dir))
    yield srv, app_dir
    srv.stop()


def get_text(srv, path="/"):
    r = httpx.get(srv.url(path), timeout=15)
    assert r.status_code == 200, r.text
    return r.text


def test_reload_picks_up_code_change(reload_server):
    srv, app_dir = reload_server
    assert get_text(srv) == "v1"
    write_app(app_dir, "v2-with-a-longer-body")
    srv.reload(sites(app_dir))
    assert get_text(srv) == "v2-with-a-longer-body"
    # and again, with a changed Caddyfile this time (no --force needed)
    write_app(app_dir, "v3-even-longer-body-text")
    srv.reload(sites(app_dir, threads=5), force=False)
    assert get_text(srv) == "v3-even-longer-body-text"


def test_request_in_flight_during_reload_completes(reload_server):
    srv, app_dir = reload_server
    assert get_text(srv) == "v1"
    result = {}

    def slow():
        try:
            r = httpx.get(srv.url("/slow"), timeout=30)
            result["status"], result["text"] = r.status_code, r.text
        except Exception as exc:  # reported below
            result["error"] = repr(exc)

    t = threading.Thread(target=slow)
    t.start()
    try:
        wait_until(lambda: (app_dir / "slow-started").exists(), 10, message="slow request to start")
        write_app(app_dir, "v2-with-a-longer-body")
        srv.reload(sites(app_dir))
        assert get_text(srv) == "v2-with-a-longer-body"
    finally:
        t.join(30)
    assert not t.is_alive()
    assert result.get("status") == 200, result
    assert result["text"] == "slow done by v1"


def test_requests_waiting_for_a_thread_during_reload_are_served(start_caddy, tmp_path):
    """threads 1: while the only thread serves a slow request, two more wait
    for it; a reload then retires that pool, which serves what waits before
    it stops (as it would the request in flight), so no one gets a 503."""
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    write_app(app_dir, "v1")
    srv = start_caddy("reload-queued", sites=sites(app_dir, threads=1))
    try:
        assert get_text(srv) == "v1"
        results = {}

        def get(key, path):
            try:
                r = httpx.get(srv.url(path), timeout=30)
                results[key] = (r.status_code, r.text)
            except Exception as exc:  # reported below
                results[key] = repr(exc)

        slow = threading.Thread(target=get, args=("slow", "/slow?1.5"))
        slow.start()
        wait_until(lambda: (app_dir / "slow-started").exists(), 10, message="slow request to start")
        waiting = [threading.Thread(target=get, args=(i, "/")) for i in range(2)]
        for t in waiting:
            t.start()
        time.sleep(0.3)  # both wait for the thread now
        write_app(app_dir, "v2-with-a-longer-body")
        srv.reload(sites(app_dir, threads=1))
        for t in [slow] + waiting:
            t.join(30)
        assert results == {"slow": (200, "slow done by v1"), 0: (200, "v1"), 1: (200, "v1")}
        assert get_text(srv) == "v2-with-a-longer-body"
    finally:
        srv.stop()


def test_failed_reload_keeps_old_app(reload_server):
    srv, app_dir = reload_server
    assert get_text(srv) == "v1"
    (app_dir / "main.py").write_text("raise RuntimeError('reload-import-failure-marker')\n" + "#" * 50)
    res = srv.reload(sites(app_dir), check=False)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "reload-import-failure-marker" in out or "reload-import-failure-marker" in srv.log()
    # the previous config (and its already-imported app) keeps serving
    assert get_text(srv) == "v1"
    write_app(app_dir, "v4-fixed-after-failure")
    srv.reload(sites(app_dir))
    assert get_text(srv) == "v4-fixed-after-failure"


def test_repeated_reloads(reload_server):
    srv, app_dir = reload_server
    for i in range(5):
        version = f"round-{i}-" + "x" * i
        write_app(app_dir, version)
        srv.reload(sites(app_dir))
        assert get_text(srv) == version
    assert srv.alive()


def test_sigterm_idle_exits_cleanly(reload_server):
    srv, app_dir = reload_server
    assert get_text(srv) == "v1"
    t0 = time.monotonic()
    code = srv.stop()
    assert time.monotonic() - t0 < 8, "caddy took too long to stop"
    assert code == 0, f"exit code {code}; log tail:\n{srv.log()[-3000:]}"


def test_sigterm_with_request_in_flight(reload_server):
    """Graceful stop: the in-flight request finishes, then caddy exits 0."""
    srv, app_dir = reload_server
    result = {}

    def slow():
        try:
            r = httpx.get(srv.url("/slow"), timeout=30)
            result["status"], result["text"] = r.status_code, r.text
        except Exception as exc:
            result["error"] = repr(exc)

    t = threading.Thread(target=slow)
    t.start()
    wait_until(lambda: (app_dir / "slow-started").exists(), 10, message="slow request to start")
    code = srv.stop()
    t.join(30)
    assert result.get("status") == 200, result
    assert result["text"] == "slow done by v1"
    assert code == 0, f"exit code {code}; log tail:\n{srv.log()[-3000:]}"
