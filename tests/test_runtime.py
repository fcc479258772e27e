"""Process-wide runtime settings the module makes for the Python thread."""

import os
import re

import httpx
import pytest

from conftest import ASGI_RAW_DIR, RAW_APP_DIR, asgi_block, python_block


def _caddy_gomaxprocs(server):
    """GOMAXPROCS as Caddy set it at start-up (its automaxprocs message)."""
    m = re.search(r"maxprocs: \w+ GOMAXPROCS=(\d+)", server.log())
    assert m, "Caddy logged no GOMAXPROCS line:\n" + server.log()[-2000:]
    return int(m.group(1))


@pytest.mark.skipif("GOMAXPROCS" in os.environ, reason="GOMAXPROCS is set for the test run itself")
def test_gomaxprocs_raised_by_one_for_the_python_thread(raw_server):
    assert httpx.get(raw_server.url("/"), timeout=10).status_code == 200
    raw_server.wait_for_log("GOMAXPROCS raised by one")
    raised = re.findall(r'GOMAXPROCS raised by one for the WSGI interpreter thread\s+\{"gomaxprocs": (\d+)\}',
                        raw_server.log())
    assert raised == [str(_caddy_gomaxprocs(raw_server) + 1)]


@pytest.mark.skipif("GOMAXPROCS" in os.environ, reason="GOMAXPROCS is set for the test run itself")
def test_gomaxprocs_left_alone_for_asgi_only(start_caddy):
    """The ASGI loop thread never enters Go while serving: it needs no P of
    its own, and an extra one would only let Go's threads crowd it."""
    sites = "http://:@PORT@ {\n" + asgi_block("asgiapp:app", ASGI_RAW_DIR, venv=False) + "\n}\n"
    srv = start_caddy("runtime-asgi-only", sites=sites)
    try:
        assert httpx.get(srv.url("/"), timeout=10).status_code == 200
        srv.wait_for_log("embedded Python started")
        assert "GOMAXPROCS raised" not in srv.log()
    finally:
        srv.stop()


def _log_with_env(start_caddy, env):
    """Caddy's log after it served one request with `env` in its environment."""
    sites = "http://:@PORT@ {\n" + python_block("rawapp:app", RAW_APP_DIR, venv=False) + "\n}\n"
    srv = start_caddy("runtime-env", sites=sites, env=env)
    try:
        assert httpx.get(srv.url("/"), timeout=10).status_code == 200
        srv.wait_for_log("embedded Python started")
        return srv.log()
    finally:
        srv.stop()


def test_gomaxprocs_from_the_environment_is_left_alone(start_caddy):
    assert "GOMAXPROCS raised" not in _log_with_env(start_caddy, {"GOMAXPROCS": "1"})


@pytest.mark.skipif("GOGC" in os.environ or "GOMEMLIMIT" in os.environ, reason="the test run itself tunes the GC")
def test_gc_headroom_kept_for_the_python_app(raw_server):
    assert httpx.get(raw_server.url("/"), timeout=10).status_code == 200
    raw_server.wait_for_log("GC heap headroom kept")
    assert re.search(r'GC heap headroom kept for the Python app\s+\{"bytes": 16777216\}', raw_server.log())


@pytest.mark.parametrize("var,value", [("GOGC", "100"), ("GOMEMLIMIT", "1GiB")])
def test_gc_settings_from_the_environment_are_left_alone(start_caddy, var, value):
    assert "GC heap headroom" not in _log_with_env(start_caddy, {var: value})


@pytest.mark.skipif("GOMAXPROCS" in os.environ, reason="GOMAXPROCS is set for the test run itself")
def test_default_threads_follow_caddys_cores_for_every_app(start_caddy):
    """max(4, 2 x cores) for each app, the first (provisioned before the
    interpreter's extra P) and the later ones alike."""
    sites = "".join(f"http://:@PORT{i}@ {{\n" + python_block("rawapp:app", RAW_APP_DIR, venv=False) + "\n}\n"
                    for i in range(3))
    srv = start_caddy("default-threads", sites=sites, nports=3)
    try:
        threads = re.findall(r'python WSGI app ready\s+\{"module_wsgi": "rawapp:app", "threads": (\d+)\}', srv.log())
        assert threads == [str(max(4, 2 * _caddy_gomaxprocs(srv)))] * 3, srv.log()[-2000:]
    finally:
        srv.stop()


def test_the_embedded_package_imports_cleanly_with_warnings_as_errors(start_caddy):
    """The driver's own modules carry a __spec__, as imported modules do:
    their relative imports raise no ImportWarning ("can't resolve package
    from __spec__ or __package__"), so an operator's PYTHONWARNINGS=error
    (or -W error in a test run) does not stop Caddy from starting."""
    sites = ("http://:@PORT@ {\n\thandle /a/* {\n" + asgi_block("asgiapp:app", ASGI_RAW_DIR, venv=False, indent="\t\t")
             + "\n\t}\n\thandle {\n" + python_block("rawapp:app", RAW_APP_DIR, venv=False, indent="\t\t") + "\n\t}\n}\n")
    srv = start_caddy("runtime-warnings", sites=sites, env={"PYTHONWARNINGS": "error::ImportWarning"})
    try:
        assert httpx.get(srv.url("/hello"), timeout=10).status_code == 200
        assert httpx.get(srv.url("/a/hello"), timeout=10).status_code == 200
        assert "ImportWarning" not in srv.log()
    finally:
        srv.stop()
