"""Open WebSockets across Caddy stop and reload (apps/ws_raw).

An open WebSocket must not hold Caddy hostage: on SIGTERM or `caddy reload`
the server closes it with a close frame (1001 "going away", as Caddy's
reverse_proxy does, or 1012 "service restart", as uvicorn does) within the
grace period (5 s in the harness), the app sees websocket.disconnect, and the
stop/reload completes.
"""

import threading
import time

from test_ws_support import OP_CLOSE, OP_TEXT, WS_RAW_DIR, RawWS, ident, parse_close, ws_sites

GOING_AWAY = (1001, 1012)
GRACE = 5.0


def wait_close(c: RawWS, timeout: float):
    """(close code or None if the TCP connection just ended, seconds waited)."""
    t0 = time.monotonic()
    try:
        op, payload, _ = c.recv_until({OP_CLOSE}, timeout=timeout, answer_pings=True)
        return parse_close(payload)[0], time.monotonic() - t0
    except ConnectionError:
        return None, time.monotonic() - t0
    except TimeoutError:
        return "timeout", time.monotonic() - t0


def test_stop_closes_open_websocket(start_caddy, venv_dir):
    srv = start_caddy("ws-stop", sites=ws_sites("wsapp:app", WS_RAW_DIR))
    c = RawWS(srv.port, "/echo")
    try:
        c.send_frame(OP_TEXT, b"hi")
        assert c.recv_frame(5)[1:] == (OP_TEXT, b"hi")
        t0 = time.monotonic()
        srv.proc.send_signal(15)
        code, waited = wait_close(c, GRACE + 5)
        exited = None
        try:
            srv.proc.wait(max(0.1, GRACE + 5 - (time.monotonic() - t0)))
            exited = time.monotonic() - t0
        except Exception:
            pass
    finally:
        c.close()
        srv.stop()
    assert exited is not None, "caddy did not exit within grace period + 5 s while a WebSocket was open"
    assert code in GOING_AWAY, f"client saw close code {code!r} after {waited:.1f}s (expected 1001/1012)"


def test_reload_does_not_wait_for_open_websocket(start_caddy, venv_dir):
    sites = ws_sites("wsapp:app", WS_RAW_DIR)
    srv = start_caddy("ws-reload", sites=sites)
    i = ident()
    c = RawWS(srv.port, f"/echo?id={i}")
    result = {}

    def do_reload():
        t0 = time.monotonic()
        res = srv.reload(sites.replace("python {", "python {\n\t\tws_ping_interval 30s"), check=False, timeout=40)
        result["rc"], result["secs"], result["err"] = res.returncode, time.monotonic() - t0, res.stderr[-500:]

    try:
        c.send_frame(OP_TEXT, b"hi")
        assert c.recv_frame(5)[1:] == (OP_TEXT, b"hi")
        th = threading.Thread(target=do_reload, daemon=True)
        th.start()
        code, waited = wait_close(c, GRACE + 5)  # the client does not close by itself before this
    finally:
        c.close()
    th.join(30)
    assert not th.is_alive(), "caddy reload still running 30 s after the client left"
    assert result["rc"] == 0, result
    assert result["secs"] < GRACE + 5, \
        f"reload took {result['secs']:.1f}s: it waited for the open WebSocket (client saw {code!r} after {waited:.1f}s)"
    assert code in GOING_AWAY, f"old WebSocket got close code {code!r} after {waited:.1f}s"
