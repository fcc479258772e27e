"""1,000 concurrent WebSocket connections on one Caddy (apps/ws_raw)."""

import asyncio
import os
import resource
import time

import httpx
import pytest

from test_ws_support import WS_RAW_DIR, connect, rss_kib, ws_sites

N = 1000
MESSAGES = 3


@pytest.fixture
def scale_server(start_caddy, venv_dir):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4 * N + 256
    if soft < want:
        new = min(want, hard) if hard != resource.RLIM_INFINITY else want
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    if soft < 2 * N + 128:
        pytest.skip(f"open-file limit {soft} too low for {N} connections")
    # started after raising the limit, so caddy inherits it
    srv = start_caddy("ws-scale", sites=ws_sites("wsapp:app", WS_RAW_DIR))
    yield srv
    srv.stop()


def test_thousand_concurrent_connections(scale_server):
    srv = scale_server
    pid = srv.proc.pid
    result = {}

    async def one(k, opened, go, sem):
        async with sem:  # bounded handshake burst (listen backlog)
            ws = await connect(srv, f"/echo?c={k}", compression=None, open_timeout=30, close_timeout=10)
        async with ws:
            opened.append(k)
            await go.wait()
            for m in range(MESSAGES):
                msg = f"conn {k} message {m}"
                await ws.send(msg)
                got = await asyncio.wait_for(ws.recv(), 30)
                assert got == msg, (got, msg)
            await ws.close()
            return ws.close_code

    async def main():
        opened, go = [], asyncio.Event()
        sem = asyncio.Semaphore(100)
        rss0 = rss_kib(pid)
        t0 = time.monotonic()
        tasks = [asyncio.ensure_future(one(k, opened, go, sem)) for k in range(N)]
        deadline = time.monotonic() + 30
        while len(opened) < N:
            failed = [t for t in tasks if t.done() and t.exception() is not None]
            if failed:
                raise failed[0].exception()
            assert time.monotonic() < deadline, f"only {len(opened)}/{N} connections open after 30 s"
            await asyncio.sleep(0.05)
        result["open_s"] = time.monotonic() - t0
        await asyncio.sleep(0.5)
        result["idle_kib_per_conn"] = (rss_kib(pid) - rss0) / N
        result["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
        go.set()
        try:
            codes = await asyncio.wait_for(asyncio.gather(*tasks), 60)
        finally:
            for t in tasks:
                t.cancel()
        result["total_s"] = time.monotonic() - t0
        return codes

    codes = asyncio.run(main())
    print("ws scale:", result)
    assert codes == [1000] * N
    assert result["fds"] >= N, result
    assert result["total_s"] < 30, result
    # An idle connection costs little: no Python thread, a couple of goroutines.
    assert result["idle_kib_per_conn"] < 256, result
    assert srv.alive()
    assert httpx.get(srv.url("/health"), timeout=10).text == "ok"
    # all connections were torn down on the server side
    deadline = time.monotonic() + 10
    while len(os.listdir(f"/proc/{pid}/fd")) > result["fds"] - N + 50 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(os.listdir(f"/proc/{pid}/fd")) <= result["fds"] - N + 50
