"""One event loop serves many requests at once; `loop` picks its implementation."""

import asyncio
import time

import httpx
import pytest

from conftest import ASGI_RAW_DIR, asgi_block


async def raw_get(port, path, timeout=30.0):
    """A minimal HTTP/1.1 GET over asyncio streams (Connection: close).

    httpx.AsyncClient needs several seconds of client CPU just to open 500
    connections on a small machine, which would hide what the server does;
    this client costs next to nothing."""
    async def go():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            return await reader.read()
        finally:
            writer.close()

    return await asyncio.wait_for(go(), timeout)


def test_500_concurrent_sleeps(asgi_server):
    """500 requests each awaiting asyncio.sleep(1) overlap on the loop."""
    n = 500

    async def main():
        assert (await raw_get(asgi_server.port, "/hello")).startswith(b"HTTP/1.1 200")  # warm up
        t0 = time.monotonic()

        async def one(i):
            data = await raw_get(asgi_server.port, f"/sleep?t=1&i={i}")
            return data, time.monotonic() - t0

        res = await asyncio.gather(*(one(i) for i in range(n)))
        return res, time.monotonic() - t0

    res, elapsed = asyncio.run(main())
    bad = [d[:200] for d, _ in res if not (d.startswith(b"HTTP/1.1 200") and d.endswith(b"\r\n\r\nslept"))]
    assert not bad, f"{len(bad)} of {n} failed, e.g. {bad[:3]}"
    times = sorted(t for _, t in res)
    assert times[0] >= 0.95, "a response came back before its 1s sleep"
    assert elapsed < 5.0, (f"{n} concurrent 1s sleeps took {elapsed:.2f}s "
                           f"(first done {times[0]:.2f}s, median {times[n // 2]:.2f}s)")


def test_200_concurrent_sleeps_via_httpx(asgi_server):
    """The same through httpx.AsyncClient, bounded more loosely (client cost)."""
    n = 200

    async def main():
        limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            assert (await client.get(asgi_server.url("/hello"))).status_code == 200
            t0 = time.monotonic()
            rs = await asyncio.gather(*(client.get(asgi_server.url(f"/sleep?t=1&i={i}")) for i in range(n)))
            return rs, time.monotonic() - t0

    rs, elapsed = asyncio.run(main())
    assert [r.status_code for r in rs] == [200] * n
    assert elapsed < 6.0, f"{n} concurrent 1s sleeps via httpx took {elapsed:.2f}s"


def test_fast_request_not_blocked_by_sleepers(asgi_server):
    async def main():
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=60)) as client:
            sleepers = [asyncio.ensure_future(client.get(asgi_server.url("/sleep?t=2"))) for _ in range(50)]
            await asyncio.sleep(0.3)
            t0 = time.monotonic()
            r = await client.get(asgi_server.url("/hello"))
            fast = time.monotonic() - t0
            rest = await asyncio.gather(*sleepers)
            return r, fast, rest

    r, fast, rest = asyncio.run(main())
    assert r.text == "hello asgi"
    assert fast < 1.0, f"a quick request took {fast:.2f}s while 50 slept"
    assert all(x.status_code == 200 for x in rest)


def test_no_crosstalk_between_concurrent_bodies(asgi_server):
    async def main():
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64)) as client:
            async def one(i):
                body = f"request-{i}-".encode() * (2000 + i)
                r = await client.post(asgi_server.url(f"/echo?i={i}"), content=body,
                                      headers={"Content-Type": f"application/x-req-{i}"})
                return r.status_code == 200 and r.content == body and r.headers["content-type"] == f"application/x-req-{i}"

            return await asyncio.gather(*(one(i) for i in range(64)))

    assert all(asyncio.run(main()))


def test_default_loop_is_uvloop_when_importable(asgi_server):
    pytest.importorskip("uvloop")
    info = httpx.get(asgi_server.url("/loop"), timeout=10).json()
    assert info["module"].startswith("uvloop"), info


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_loop_setting(start_caddy, loop):
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    sites = "http://:@PORT@ {\n" + asgi_block("asgiapp:app", ASGI_RAW_DIR, loop=loop) + "\n}\n"
    srv = start_caddy(f"loop-{loop}", sites=sites)
    try:
        info = httpx.get(srv.url("/loop"), timeout=10).json()
        assert info["module"].split(".")[0] == loop, info
        # it serves concurrently on that loop too
        async def main():
            async with httpx.AsyncClient(timeout=20, limits=httpx.Limits(max_connections=60)) as c:
                t0 = time.monotonic()
                rs = await asyncio.gather(*(c.get(srv.url("/sleep?t=0.5")) for _ in range(50)))
                return rs, time.monotonic() - t0

        rs, elapsed = asyncio.run(main())
        assert all(r.status_code == 200 for r in rs)
        assert elapsed < 3.0, elapsed
        srv.wait_for_log("ASGI event loop running")
    finally:
        assert srv.stop() == 0


def test_app_runs_as_current_task_with_its_own_context(asgi_server):
    """From its first line the app runs inside its own asyncio task (anyio's
    cancel scopes need asyncio.current_task()), and ContextVars set by one
    request never show in the next one on the same connection or another,
    however the driver starts the task (eagerly on Python 3.12+)."""
    with httpx.Client(timeout=10) as c:
        for i in range(20):
            info = c.get(asgi_server.url(f"/task_context?id=r{i}")).json()
            assert info == {"task": True, "seen": None, "task_done": False}, (i, info)
    info = httpx.get(asgi_server.url("/task_context?id=other"), timeout=10).json()
    assert info == {"task": True, "seen": None, "task_done": False}, info
