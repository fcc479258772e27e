"""ASGI lifespan: startup before serving, state, failures, timeouts, shutdown
on stop and on reload, and ``lifespan off``."""

import signal
import subprocess
import threading
import time

import httpx
import pytest

from conftest import APPS_DIR, asgi_block, free_port, global_options, run_caddy_cmd, wait_until

LIFESPAN_DIR = APPS_DIR / "asgi_lifespan"


def sites(module, **kw):
    return "http://:@PORT@ {\n\troute {\n" + asgi_block(module, LIFESPAN_DIR, indent="\t\t", **kw) + "\n\t}\n}\n"


def write_config(tmp_path, module, **kw):
    port = free_port()
    cfg = global_options(f"127.0.0.1:{free_port()}") + "\n" + sites(module, **kw).replace("@PORT@", str(port))
    path = tmp_path / "Caddyfile"
    path.write_text(cfg)
    return path


def run_must_fail(tmp_path, module, timeout=30, **kw):
    """`caddy run` that must exit by itself; returns (rc, output, seconds)."""
    path = write_config(tmp_path, module, **kw)
    t0 = time.monotonic()
    try:
        res = run_caddy_cmd(["run", "--config", str(path), "--adapter", "caddyfile"], tmp_path, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`caddy run` with {module} kept running for {timeout}s although lifespan startup fails")
    return res.returncode, res.stdout + res.stderr, time.monotonic() - t0


def validate(tmp_path, module, **kw):
    path = write_config(tmp_path, module, **kw)
    res = run_caddy_cmd(["validate", "--config", str(path), "--adapter", "caddyfile"], tmp_path, timeout=60)
    return res.returncode, res.stdout + res.stderr


def markers(d, prefix):
    return sorted(p.name[len(prefix):] for p in d.iterdir() if p.name.startswith(prefix))


# ---------------------------------------------------------------- lifespan on


@pytest.fixture
def lifespan_server(start_caddy, tmp_path):
    state = tmp_path / "markers"
    state.mkdir()
    srv = start_caddy("lifespan", sites=sites("ok:app", lifespan="on"),
                      env={"CADDYSNAKE_LIFESPAN_DIR": str(state), "CADDYSNAKE_STARTUP_DELAY": "1.0"})
    yield srv, state
    srv.stop()


def test_startup_completes_before_serving(lifespan_server):
    srv, state = lifespan_server
    # startup sleeps 1s and only then writes its marker: if Caddy had served
    # before startup completed, the harness could have connected before it.
    started = markers(state, "startup-")
    assert len(started) == 1, f"startup markers right after caddy listened: {started}"
    r = httpx.get(srv.url("/"), timeout=10)
    assert r.status_code == 200
    data = r.json()
    assert data["state"] == {"instance": started[0], "greeting": "hello from startup"}
    startup_time = float((state / f"startup-{started[0]}").read_text())
    assert startup_time <= data["time"]


def test_state_reaches_every_request(lifespan_server):
    srv, state = lifespan_server
    instance = markers(state, "startup-")[0]
    with httpx.Client(timeout=10) as c:
        for _ in range(20):
            assert c.get(srv.url("/")).json()["state"]["instance"] == instance


def test_shutdown_runs_on_sigterm(lifespan_server):
    srv, state = lifespan_server
    instance = markers(state, "startup-")[0]
    assert httpx.get(srv.url("/"), timeout=10).status_code == 200
    assert markers(state, "shutdown-") == []
    code = srv.stop()
    assert code == 0, f"exit code {code}; log tail:\n{srv.log()[-3000:]}"
    assert markers(state, "shutdown-") == [instance], "lifespan shutdown did not run on SIGTERM"


def test_shutdown_runs_for_old_app_on_reload(lifespan_server):
    srv, state = lifespan_server
    old = markers(state, "startup-")[0]
    assert httpx.get(srv.url("/"), timeout=10).json()["state"]["instance"] == old
    srv.reload(sites("ok:app", lifespan="on"))
    wait_until(lambda: markers(state, "shutdown-") == [old], 10,
               message="lifespan shutdown of the old app instance after reload")
    new = [i for i in markers(state, "startup-") if i != old]
    assert len(new) == 1, markers(state, "startup-")
    assert httpx.get(srv.url("/"), timeout=10).json()["state"]["instance"] == new[0]
    # and on stop, the new one shuts down too
    assert srv.stop() == 0
    assert sorted(markers(state, "shutdown-")) == sorted([old, new[0]])


def test_reload_waits_for_in_flight_request_before_shutdown(lifespan_server):
    srv, state = lifespan_server
    old = markers(state, "startup-")[0]
    result = {}

    def slow():
        try:
            r = httpx.get(srv.url("/slow?6"), timeout=30)
            result["status"], result["json"] = r.status_code, r.json()
        except Exception as exc:  # reported below
            result["error"] = repr(exc)

    t = threading.Thread(target=slow)
    t.start()
    try:
        wait_until(lambda: markers(state, "slow-started-") == [old], 10, message="the slow request to start")
        t0 = time.monotonic()
        srv.reload(sites("ok:app", lifespan="on"))
        # Caddy holds the reload (and its admin API) until Cleanup returns:
        # the old app must retire in the background, not block it (the new
        # app's startup takes ~1s, the old request 6s).
        assert time.monotonic() - t0 < 4.5, "the reload waited for the old app's request"
        new = [i for i in markers(state, "startup-") if i != old]
        assert len(new) == 1
        assert httpx.get(srv.url("/"), timeout=10).json()["state"]["instance"] == new[0]
    finally:
        t.join(30)
    assert result.get("status") == 200, result
    assert result["json"]["state"]["instance"] == old
    wait_until(lambda: markers(state, "shutdown-") == [old], 10, message="shutdown of the old instance")
    slow_done = float((state / f"slow-done-{old}").read_text())
    shut = float((state / f"shutdown-{old}").read_text())
    assert shut >= slow_done, "lifespan shutdown ran while a request of that app was still in flight"


def test_exit_cuts_endless_stream_after_grace_period(start_caddy, tmp_path):
    """On SIGTERM Caddy waits its grace_period; a stream that never ends is
    then cut (as reverse_proxy's would be) so the process exits, after the
    app's lifespan shutdown."""
    state = tmp_path / "markers"
    state.mkdir()
    srv = start_caddy("lifespan-grace", sites=sites("ok:app", lifespan="on"), global_extra="\tgrace_period 1s",
                      env={"CADDYSNAKE_LIFESPAN_DIR": str(state), "CADDYSNAKE_STARTUP_DELAY": "0"})
    instance = markers(state, "startup-")
    got = []

    def listen():
        try:
            with httpx.stream("GET", srv.url("/forever"), timeout=30) as r:
                for chunk in r.iter_raw():
                    got.append(chunk)
        except httpx.HTTPError as exc:
            got.append(exc)

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    wait_until(lambda: len(got) >= 2, 10, message="the stream to flow")
    t0 = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    code = srv.proc.wait(20)
    elapsed = time.monotonic() - t0
    srv.stop()
    assert code == 0, srv.log()[-3000:]
    assert elapsed < 10, f"caddy took {elapsed:.1f}s to exit with a 1s grace period"
    assert markers(state, "shutdown-") == instance, "lifespan shutdown did not run"
    t.join(10)


def test_shutdown_failure_is_logged(start_caddy):
    srv = start_caddy("lifespan-shutfail", sites=sites("fail_shutdown:app", lifespan="on"))
    assert httpx.get(srv.url("/"), timeout=10).text == "ok"
    srv.stop()
    log = srv.log()
    assert "shutdown-failed-marker-4444" in log
    assert "Traceback" not in log, log[-3000:]


@pytest.mark.parametrize("setting", ["on", "auto"])
def test_an_app_returning_from_lifespan_is_served(start_caddy, tmp_path, setting):
    """Returning ends the lifespan scope (a framework-free app's `if
    scope["type"] != "http": return`): as under uvicorn, on or auto, the app
    is served without lifespan events, with an info line, no error."""
    state = tmp_path / "markers"
    state.mkdir()
    srv = start_caddy("lifespan-returns", sites=sites("returns:app", lifespan=setting),
                      env={"CADDYSNAKE_LIFESPAN_DIR": str(state)})
    r = httpx.get(srv.url("/"), timeout=10)
    assert r.status_code == 200 and r.text == "returned from lifespan; state=[]"
    assert srv.stop() == 0
    log = srv.log()
    assert "returned in the lifespan scope before answering startup" in log, log[-3000:]
    assert '"level":"error"' not in log and "Traceback" not in log, log[-3000:]
    assert markers(state, "got-") == ["lifespan"]


def test_an_app_returning_after_startup_shuts_down_cleanly(start_caddy, tmp_path):
    """An app that answers startup and then returns has nothing left to shut
    down: stopping Caddy is clean (uvicorn: "Application shutdown complete")."""
    state = tmp_path / "markers"
    state.mkdir()
    srv = start_caddy("lifespan-returns-after", sites=sites("returns:app", lifespan="on"),
                      env={"CADDYSNAKE_LIFESPAN_DIR": str(state), "CADDYSNAKE_LIFESPAN_RETURN": "after-startup"})
    assert httpx.get(srv.url("/"), timeout=10).text == "returned from lifespan; state=['ready']"
    assert srv.stop() == 0
    log = srv.log()
    assert '"level":"error"' not in log and "Traceback" not in log, log[-3000:]
    assert markers(state, "got-") == ["lifespan", "lifespan.startup"]


# ---------------------------------------------------------------- startup failures


def test_startup_failed_message_stops_caddy_run(tmp_path):
    rc, out, _ = run_must_fail(tmp_path, "fail_message:app", lifespan="on")
    assert rc != 0
    assert "startup-failed-marker-4242: db unreachable" in out
    assert "Traceback" not in out, out[-3000:]  # the app's message, as uvicorn shows it


def test_startup_failed_message_fails_validate(tmp_path):
    rc, out = validate(tmp_path, "fail_message:app", lifespan="on")
    assert rc != 0
    assert "startup-failed-marker-4242" in out


def test_startup_exception_stops_caddy_run(tmp_path):
    rc, out, _ = run_must_fail(tmp_path, "fail_raise:app", lifespan="on")
    assert rc != 0
    assert "startup-raise-marker-4343" in out
    assert "Traceback" in out and "connect_database" in out


def test_startup_exception_fails_validate(tmp_path):
    rc, out = validate(tmp_path, "fail_raise:app", lifespan="on")
    assert rc != 0
    assert "startup-raise-marker-4343" in out


def test_startup_timeout(tmp_path):
    rc, out, elapsed = run_must_fail(tmp_path, "hang:app", lifespan="on", lifespan_timeout="2s", timeout=30)
    assert rc != 0
    low = out.lower()
    assert "lifespan" in low and "startup" in low, out[-3000:]
    assert "2s" in out and ("timed out" in low or "timeout" in low or "did not complete" in low), out[-3000:]
    assert elapsed < 20, f"caddy took {elapsed:.1f}s to give up on a 2s lifespan_timeout"


# ---------------------------------------------------------------- lifespan auto


def test_auto_runs_startup_state_and_shutdown(start_caddy, tmp_path):
    """auto with an app that supports lifespan is lifespan on."""
    state = tmp_path / "markers"
    state.mkdir()
    srv = start_caddy("lifespan-auto", sites=sites("ok:app", lifespan="auto"),
                      env={"CADDYSNAKE_LIFESPAN_DIR": str(state)})
    instance = markers(state, "startup-")
    assert len(instance) == 1
    assert httpx.get(srv.url("/"), timeout=10).json()["state"]["instance"] == instance[0]
    assert srv.stop() == 0
    assert markers(state, "shutdown-") == instance


def test_auto_serves_an_app_without_lifespan_support(start_caddy, tmp_path):
    """As uvicorn's default: an app that raises in the lifespan scope before
    answering (Django's ASGI handler does) is served without lifespan, with
    an info line instead of a failed start-up."""
    state = tmp_path / "markers"
    state.mkdir()
    srv = start_caddy("lifespan-auto-none", sites=sites("no_lifespan:app", lifespan="auto"),
                      env={"CADDYSNAKE_LIFESPAN_DIR": str(state)})
    r = httpx.get(srv.url("/x"), timeout=10)
    assert r.status_code == 200 and r.text.startswith("no lifespan here")
    assert markers(state, "got-") == ["lifespan"]  # it was asked, once
    assert srv.stop() == 0
    log = srv.log()
    assert "does not support lifespan" in log
    assert "Traceback" not in log
    assert markers(state, "got-") == ["lifespan"]  # and no shutdown was sent


def test_auto_still_fails_on_startup_failed(tmp_path):
    """An app that answers lifespan.startup.failed supports lifespan: it stops
    caddy run under auto too (as uvicorn)."""
    rc, out, _ = run_must_fail(tmp_path, "fail_message:app", lifespan="auto")
    assert rc != 0
    assert "startup-failed-marker-4242: db unreachable" in out


# ---------------------------------------------------------------- lifespan off


@pytest.mark.parametrize("setting", ["off", None])
def test_lifespan_off_never_sends_lifespan_scope(start_caddy, tmp_path, setting):
    state = tmp_path / "markers"
    state.mkdir()
    srv = start_caddy("lifespan-off", sites=sites("no_lifespan:app", lifespan=setting),
                      env={"CADDYSNAKE_LIFESPAN_DIR": str(state)})
    try:
        with httpx.Client(timeout=10) as c:
            for _ in range(3):
                r = c.get(srv.url("/x"))
                assert r.status_code == 200
                assert r.text.startswith("no lifespan here")
    finally:
        code = srv.stop()
    assert code == 0
    log = srv.log()
    assert "no-lifespan-marker" not in log
    assert list(state.iterdir()) == [], "the app got a non-http scope"
    assert "Traceback" not in log
