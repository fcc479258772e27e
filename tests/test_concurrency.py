"""The `threads` pool really runs requests in parallel (and no more than asked)."""

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import uuid

import httpx
import pytest

from conftest import RAW_APP_DIR, python_block, read_events, wait_until


def start_raw(start_caddy, threads, state_dir=None):
    sites = "http://:@PORT@ {\n" + python_block("rawapp:app", RAW_APP_DIR, venv=False, threads=threads) + "\n}\n"
    env = {"CADDYSNAKE_TEST_STATE": str(state_dir)} if state_dir else None
    return start_caddy(f"threads{threads}", sites=sites, env=env)


@pytest.fixture(scope="module")
def server8(start_caddy, tmp_path_factory):
    srv = start_raw(start_caddy, 8, tmp_path_factory.mktemp("threads8-state"))
    yield srv
    srv.stop()


def parallel_get(urls, timeout=20):
    barrier = threading.Barrier(len(urls))

    def one(url):
        with httpx.Client(timeout=timeout) as c:
            barrier.wait(timeout=timeout)
            r = c.get(url)
            return r.status_code, r.text

    t0 = time.monotonic()
    with ThreadPoolExecutor(len(urls)) as ex:
        results = list(ex.map(one, urls))
    return results, time.monotonic() - t0


def test_eight_sleeps_run_in_parallel(server8):
    # warm up (first request may pay one-time costs)
    assert httpx.get(server8.url("/hello"), timeout=10).status_code == 200
    results, elapsed = parallel_get([server8.url("/sleep?t=0.5")] * 8)
    assert results == [(200, "slept")] * 8
    assert elapsed < 1.5, f"8 x 0.5s sleeps took {elapsed:.2f}s with threads 8 (sequential would be 4s)"


def test_fast_request_not_blocked_by_sleepers(server8):
    ids = [uuid.uuid4().hex[:12] for _ in range(4)]
    with ThreadPoolExecutor(5) as ex:
        slow = [ex.submit(httpx.get, server8.url(f"/sleep?t=1.5&id={i}"), timeout=20) for i in ids]
        # wait until all four are sleeping inside the app
        wait_until(lambda: all(read_events(server8.base_url, i) for i in ids), 5.0,
                   message="4 sleepers in flight")
        t0 = time.monotonic()
        r = httpx.get(server8.url("/hello"), timeout=10)
        fast = time.monotonic() - t0
        assert r.status_code == 200
        assert fast < 1.0, f"quick request took {fast:.2f}s while 4 of 8 threads slept"
        assert all(f.result().status_code == 200 for f in slow)


def test_no_crosstalk_between_concurrent_requests(server8):
    def one(i):
        body = (f"request-{i}-".encode() * (1000 + i))
        with httpx.Client(timeout=20) as c:
            for _ in range(5):
                r = c.post(server8.url(f"/echo?i={i}"), content=body,
                           headers={"Content-Type": f"application/x-req-{i}"})
                if r.status_code != 200 or r.content != body or r.headers["content-type"] != f"application/x-req-{i}":
                    return False
        return True

    with ThreadPoolExecutor(16) as ex:
        assert all(ex.map(one, range(32)))


def test_short_waits_use_every_thread(start_caddy):
    """Requests that wait 2 ms (GIL released) each let the next thread in
    at once, so all 4 threads wait together. A rule that let the next thread
    in only after a request had run 1 ms started one request per ~1.1 ms
    (Go's timers cannot fire sooner while the process idles), and never
    had more than 2 or 3 of them in flight."""
    srv = start_raw(start_caddy, 4)
    try:
        assert httpx.get(srv.url("/hello"), timeout=10).status_code == 200

        def client(_):
            with httpx.Client(timeout=20) as c:
                return [c.get(srv.url("/overlap?t=0.002")).status_code for _ in range(40)]

        seen = []
        for _ in range(3):  # a busy machine may spoil one round
            with ThreadPoolExecutor(16) as ex:
                assert all(code == 200 for codes in ex.map(client, range(16)) for code in codes)
            seen.append(int(httpx.get(srv.url("/overlap/max"), timeout=10).text))
            if seen[-1] == 4:
                break
        assert seen[-1] == 4, f"most 2 ms waits in flight at once, per round: {seen}; want all 4 threads"
    finally:
        srv.stop()


def test_threads_limit_is_honoured(start_caddy):
    """threads 1: three 0.4s requests cannot overlap."""
    srv = start_raw(start_caddy, 1)
    try:
        assert httpx.get(srv.url("/hello"), timeout=10).status_code == 200
        results, elapsed = parallel_get([srv.url("/sleep?t=0.4")] * 3)
        assert results == [(200, "slept")] * 3
        assert elapsed >= 1.1, f"3 x 0.4s with threads 1 finished in {elapsed:.2f}s: requests overlapped"
    finally:
        srv.stop()


def test_stalled_upload_does_not_block_other_requests(server8):
    """An app blocked in wsgi.input.read() must not hold the GIL."""
    ident = uuid.uuid4().hex[:12]
    release = threading.Event()

    def gen():
        yield b"part-one;"
        release.wait(10)
        yield b"part-two"

    with ThreadPoolExecutor(1) as ex:
        fut = ex.submit(httpx.post, server8.url(f"/input/read?id={ident}"), content=gen(), timeout=30)
        try:
            wait_until(lambda: read_events(server8.base_url, ident), 5, message="upload reached the app")
            # the upload is now stuck mid-body; other requests must still be quick
            for _ in range(5):
                t0 = time.monotonic()
                r = httpx.get(server8.url(f"/hello?i={ident}"), timeout=10)
                assert r.status_code == 200
                assert time.monotonic() - t0 < 1.0
        finally:
            release.set()
        r = fut.result(timeout=30)
    assert r.status_code == 200
    assert r.json()["len"] == len(b"part-one;part-two")


def test_apps_have_separate_pools(start_caddy, tmp_path):
    """A busy threads-1 app does not delay another app in the same Caddy."""
    from conftest import APPS_DIR
    ident = uuid.uuid4().hex[:12]
    events = tmp_path / "events.log"
    sites = ("http://:@PORT0@ {\n" + python_block("rawapp:app", RAW_APP_DIR, venv=False, threads=1) + "\n}\n"
             "http://:@PORT1@ {\n" + python_block("main:app", APPS_DIR / "iso_a", venv=False, threads=1) + "\n}\n")
    srv = start_caddy("two-pools", sites=sites, nports=2, env={"CADDYSNAKE_TEST_STATE": str(tmp_path)})
    try:
        with ThreadPoolExecutor(1) as ex:
            fut = ex.submit(httpx.get, srv.url(f"/sleep?t=1.5&id={ident}", 0), timeout=20)
            # the only thread of the first app is now asleep inside the app
            wait_until(lambda: events.exists() and f"sleep-start:{ident}" in events.read_text(), 5,
                       message="sleeper to start")
            t0 = time.monotonic()
            r = httpx.get(srv.url("/", 1), timeout=10)
            assert r.status_code == 200
            assert r.text == "site-a from iso_a"
            assert time.monotonic() - t0 < 1.0
            assert fut.result().status_code == 200
    finally:
        srv.stop()


def test_dynamic_header_values_intact_under_concurrency(server8):
    """Header names/values built at run time must reach the client unchanged
    (the bridge must copy them out of Python memory)."""
    def one(i):
        bad = []
        with httpx.Client(timeout=20) as c:
            for j in range(15):
                tag = f"c{i}r{j}"
                try:
                    r = c.get(server8.url(f"/dyn_headers?n=20&tag={tag}&t=0.01"))
                except httpx.HTTPError as exc:
                    bad.append(f"{tag}: {exc!r}")
                    continue
                expected = r.json() if r.status_code == 200 else {}
                if r.headers.get("content-length") != str(len(r.content)):
                    bad.append(f"{tag}: content-length {r.headers.get('content-length')!r}")
                for k, v in expected.items():
                    if r.headers.get(k) != v:
                        bad.append(f"{tag}: {k}={r.headers.get(k)!r}, expected {v!r}")
        return bad

    with ThreadPoolExecutor(8) as ex:
        bad = [b for res in ex.map(one, range(8)) for b in res]
    assert not bad, f"{len(bad)} corrupted responses, e.g. {bad[:5]}"


def test_client_slow_to_send_a_small_body_holds_no_thread(start_caddy):
    """threads 1: a small body that has not arrived yet is awaited before
    the request takes the only Python thread, so another request is served
    meanwhile; the slow one then gets its whole body."""
    srv = start_raw(start_caddy, 1)
    try:
        assert httpx.get(srv.url("/hello"), timeout=10).status_code == 200
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(b"POST /input/read HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\n")
            time.sleep(0.3)  # the request is in Caddy, its body still on the way
            late = threading.Timer(2.0, s.sendall, (b"later",))
            late.start()
            try:
                t0 = time.monotonic()
                r = httpx.get(srv.url("/hello"), timeout=10)
                elapsed = time.monotonic() - t0
            finally:
                late.join()
            resp = raw_response(s)
        assert r.status_code == 200
        assert elapsed < 1.0, f"/hello waited {elapsed:.2f}s behind a request whose body had not come"
        assert resp.startswith(b"HTTP/1.1 200"), resp[:300]
        assert json.loads(resp.partition(b"\r\n\r\n")[2])["len"] == 5
    finally:
        srv.stop()


def raw_response(s, timeout=10):
    buf, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        s.settimeout(max(0.05, deadline - time.monotonic()))
        c = s.recv(65536)
        if not c:
            break
        buf += c
    return buf


def test_requests_that_give_up_waiting_never_reach_the_app(start_caddy, tmp_path):
    """threads 1, max_wait 400ms: while the only thread sleeps, a request that
    waits past max_wait gets a 503 and one whose client leaves is dropped; the
    app runs neither later (they leave the queue), and serves on."""
    block = python_block("rawapp:app", RAW_APP_DIR, venv=False, threads=1).replace(
        "\tthreads 1", "\tthreads 1\n\t\tmax_wait 400ms")
    assert "max_wait 400ms" in block
    srv = start_caddy("maxwait", sites="http://:@PORT@ {\n" + block + "\n}\n",
                      env={"CADDYSNAKE_TEST_STATE": str(tmp_path)})
    try:
        with ThreadPoolExecutor(1) as ex:
            busy = ex.submit(httpx.get, srv.url("/sleep?t=1.5&id=A"), timeout=20)
            time.sleep(0.3)  # A holds the only thread
            left = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            left.sendall(b"GET /sleep?t=0&id=C HTTP/1.1\r\nHost: h\r\n\r\n")
            t0 = time.monotonic()
            r = httpx.get(srv.url("/sleep?t=0&id=B"), timeout=20)
            waited = time.monotonic() - t0
            left.close()
            assert r.status_code == 503, r.text
            assert 0.35 < waited < 1.1, f"503 after {waited:.2f}s, max_wait is 0.4s"
            assert busy.result().status_code == 200
        assert httpx.get(srv.url("/hello"), timeout=10).status_code == 200
        assert read_events(srv.base_url, "A") == ["sleep-start:A"]
        assert read_events(srv.base_url, "B") == []
        assert read_events(srv.base_url, "C") == []
    finally:
        srv.stop()
