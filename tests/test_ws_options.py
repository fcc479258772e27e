"""The ws_* subdirectives: ws_ping_interval, ws_ping_timeout, ws_compression,
ws_max_message_size (server: ws_ping_interval 1s, ws_ping_timeout 1s,
ws_compression off, ws_max_message_size 64KiB)."""

import asyncio
import time

import pytest
from websockets.exceptions import ConnectionClosed

from conftest import run_caddy_cmd
from test_ws_support import (  # noqa: F401  (fixtures)
    OP_CLOSE, OP_PING, OP_TEXT, WS_RAW_DIR, RawWS, _ws_tuned_holder, connect, ident, parse_close, wait_events,
    ws_sites, ws_tuned_server,
)


def run(coro, timeout=30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_server_pings_at_interval(ws_tuned_server):
    """With ws_ping_interval 1s a raw client sees pings, and answering them keeps it open."""
    with RawWS(ws_tuned_server.port, "/echo") as c:
        t0 = time.monotonic()
        pings = 0
        deadline = t0 + 4.5
        while time.monotonic() < deadline:
            try:
                fin, op, payload = c.recv_frame(max(0.05, deadline - time.monotonic()))
            except TimeoutError:
                break
            assert op != OP_CLOSE, f"closed although pings were answered: {parse_close(payload)}"
            if op == OP_PING:
                pings += 1
                c.send_frame(0xA, payload)
        assert pings >= 2, f"saw {pings} pings in 4.5 s with ws_ping_interval 1s"
        c.send_frame(OP_TEXT, b"alive")
        op, payload, _ = c.recv_until({OP_TEXT, OP_CLOSE}, timeout=5, answer_pings=True)
        assert (op, payload) == (OP_TEXT, b"alive")


def test_library_client_without_own_pings_stays_alive(ws_tuned_server):
    """A client that sends no pings itself (but answers the server's) is kept open."""
    async def go():
        async with connect(ws_tuned_server, "/echo", ping_interval=None) as ws:
            await asyncio.sleep(3.5)
            await ws.send("still here")
            assert await asyncio.wait_for(ws.recv(), 5) == "still here"
    run(go())


def test_unanswered_pings_close_1011(ws_tuned_server):
    i = ident()
    with RawWS(ws_tuned_server.port, f"/echo?id={i}") as c:
        t0 = time.monotonic()
        op, payload, seen = c.recv_until({OP_CLOSE}, timeout=8)  # never answers pings
        elapsed = time.monotonic() - t0
        code, reason = parse_close(payload)
        # The server does not wait for this dead client's close reply: it
        # drops the connection (as uvicorn does), and the app hears of it.
        t1 = time.monotonic()
        c.sock.settimeout(4)
        while c.sock.recv(65536):
            pass
        dropped = time.monotonic() - t1
    assert OP_PING in seen
    assert code == 1011, (code, reason)
    assert 1.5 <= elapsed <= 5.0, elapsed  # interval 1s + timeout 1s
    assert dropped < 2.0, dropped
    evs = wait_events(ws_tuned_server, i, lambda e: any(x.startswith("disconnect:") for x in e), timeout=2)
    assert any(x.startswith(("disconnect:1011:", "disconnect:1006:")) for x in evs), evs


def test_compression_off_not_negotiated(ws_tuned_server):
    async def go():
        async with connect(ws_tuned_server, "/echo", compression="deflate") as ws:
            assert "Sec-WebSocket-Extensions" not in ws.response.headers, ws.response.headers
            await ws.send("abc " * 4000)
            assert await asyncio.wait_for(ws.recv(), 5) == "abc " * 4000
    run(go())


def test_compression_off_rejects_rsv1_frames(ws_tuned_server):
    """Without the extension a compressed (RSV1) frame is a protocol error."""
    with RawWS(ws_tuned_server.port, "/echo") as c:
        c.send_frame(OP_TEXT, b"\xf2\x48\xcd\xc9\xc9\x07\x00", rsv1=True)
        op, payload, _ = c.recv_until({OP_CLOSE}, timeout=5, answer_pings=True)
        assert parse_close(payload)[0] == 1002


def test_max_message_size_directive(ws_tuned_server):
    i = ident()

    async def go():
        async with connect(ws_tuned_server, f"/echo?id={i}") as ws:
            ok = b"y" * (64 * 1024)
            await ws.send(ok)
            assert await asyncio.wait_for(ws.recv(), 5) == ok
            await ws.send(b"y" * (64 * 1024 + 1))
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            return ws.close_code
    assert run(go()) == 1009
    evs = wait_events(ws_tuned_server, i, lambda e: any(x.startswith("disconnect:") for x in e))
    assert "disconnect:1009:" in evs, evs


def test_ping_interval_zero_disables_pings(start_caddy, venv_dir):
    srv = start_caddy("ws-noping", sites=ws_sites("wsapp:app", WS_RAW_DIR,
                                                  options={"ws_ping_interval": "0", "ws_ping_timeout": "1s"}))
    try:
        with RawWS(srv.port, "/echo") as c:
            with pytest.raises(TimeoutError):
                fin, op, payload = c.recv_frame(2.5)
                pytest.fail(f"unexpected frame {op}: {payload!r}")
            c.send_frame(OP_TEXT, b"no pings")
            assert c.recv_frame(5)[1:] == (OP_TEXT, b"no pings")
    finally:
        srv.stop()


@pytest.mark.parametrize("line,needle", [
    ("ws_compression maybe", "ws_compression"),
    ("ws_max_message_size lots", "ws_max_message_size"),
    ("ws_ping_interval soon", "ws_ping_interval"),
    ("ws_ping_timeout -5s", "ws_ping"),
])
def test_bad_ws_options_are_config_errors(tmp_path, line, needle):
    name, value = line.split(" ", 1)
    cf = tmp_path / "Caddyfile"
    cf.write_text("{\n\tadmin off\n}\nhttp://:0 {\n" + ws_block_text(name, value) + "\n}\n")
    res = run_caddy_cmd(["validate", "--config", str(cf), "--adapter", "caddyfile"], tmp_path)
    assert res.returncode != 0, res.stdout + res.stderr
    assert needle in res.stdout + res.stderr


def ws_block_text(name, value):
    from test_ws_support import ws_block
    return ws_block("wsapp:app", WS_RAW_DIR, options={name: value})
