"""FastAPI on the ASGI bridge: the seed's hello world and a fuller app."""

import hashlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conftest import APPS_DIR, asgi_block, wait_until

SEED_DIR = APPS_DIR / "seed_fastapi"
FASTAPI_DIR = APPS_DIR / "fastapi_app"


def route_sites(block):
    return "http://:@PORT@ {\n\troute {\n" + block + "\n\t}\n}\n"


# ---------------------------------------------------------------- the seed


@pytest.fixture(scope="module")
def seed_server(start_caddy, venv_dir):
    srv = start_caddy("seed-fastapi", sites=route_sites(asgi_block("main:app", SEED_DIR, indent="\t\t")))
    yield srv
    srv.stop()


def test_seed_hello_world(seed_server):
    r = httpx.get(seed_server.url("/hello-world"), timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == "Hello world!"
    assert r.content == b'"Hello world!"'


def test_seed_unknown_route_404(seed_server):
    r = httpx.get(seed_server.url("/nope"), timeout=10)
    assert r.status_code == 404
    assert r.json() == {"detail": "Not Found"}


def test_seed_method_not_allowed(seed_server):
    assert httpx.post(seed_server.url("/hello-world"), timeout=10).status_code == 405


def test_seed_openapi(seed_server):
    r = httpx.get(seed_server.url("/openapi.json"), timeout=10)
    assert r.status_code == 200
    assert "/hello-world" in r.json()["paths"]


def test_seed_keepalive(seed_server):
    with httpx.Client(timeout=10) as c:
        for _ in range(100):
            assert c.get(seed_server.url("/hello-world")).json() == "Hello world!"


# ---------------------------------------------------------------- a fuller app


@pytest.fixture(scope="module")
def fastapi_server(start_caddy, venv_dir):
    block = asgi_block("main:app", FASTAPI_DIR, lifespan="on", indent="\t\t")
    srv = start_caddy("fastapi", sites=route_sites(block))
    yield srv
    srv.stop()


def test_path_and_query_params(fastapi_server):
    r = httpx.get(fastapi_server.url("/items/42?q=caf%C3%A9&limit=7"), timeout=10)
    assert r.status_code == 200
    assert r.json() == {"item_id": 42, "q": "caf\u00e9", "limit": 7}
    assert httpx.get(fastapi_server.url("/items/1"), timeout=10).json() == {"item_id": 1, "q": None, "limit": 10}


@pytest.mark.parametrize("url", ["/items/not-an-int", "/items/1?limit=1000"])
def test_param_validation_422(fastapi_server, url):
    r = httpx.get(fastapi_server.url(url), timeout=10)
    assert r.status_code == 422
    assert r.json()["detail"]


def test_json_body(fastapi_server):
    r = httpx.post(fastapi_server.url("/items"), json={"name": "widget", "price": 2.5, "tags": ["a", "b"]},
                   timeout=10)
    assert r.status_code == 201, r.text
    assert r.json() == {"created": {"name": "widget", "price": 2.5, "tags": ["a", "b"]}, "double_price": 5.0}


def test_json_body_validation_422(fastapi_server):
    r = httpx.post(fastapi_server.url("/items"), json={"name": "", "price": -1}, timeout=10)
    assert r.status_code == 422
    locs = sorted(tuple(e["loc"]) for e in r.json()["detail"])
    assert locs == [("body", "name"), ("body", "price")]
    r = httpx.post(fastapi_server.url("/items"), content=b"{not json", timeout=10,
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 422


def test_form(fastapi_server):
    r = httpx.post(fastapi_server.url("/form"), data={"name": "Zo\u00eb", "age": "33"}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "Zo\u00eb", "age": 33}
    assert httpx.post(fastapi_server.url("/form"), data={"name": "x", "age": "old"}, timeout=10).status_code == 422


def test_file_upload(fastapi_server):
    data = os.urandom(3 << 20)
    r = httpx.post(fastapi_server.url("/upload"), files={"file": ("blob.bin", data, "application/x-blob")},
                   data={"note": "three MiB"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == {"filename": "blob.bin", "content_type": "application/x-blob", "size": len(data),
                        "sha256": hashlib.sha256(data).hexdigest(), "note": "three MiB"}


def test_streaming_response(fastapi_server):
    t0 = time.monotonic()
    first, buf = None, b""
    with httpx.stream("GET", fastapi_server.url("/stream?n=5&delay=0.25"), timeout=15) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain")
        for piece in r.iter_raw():
            buf += piece
            if first is None and b"line 0\n" in buf:
                first = time.monotonic() - t0
    total = time.monotonic() - t0
    assert buf == b"".join(b"line %d\n" % i for i in range(5))
    assert first is not None and first < total - 0.7, (first, total)



def test_client_leaving_a_stream_logs_no_error(fastapi_server):
    """A client that leaves a StreamingResponse (an SSE feed, a token stream)
    is routine: nothing at error level, as under uvicorn. Starlette turns
    send()'s ClientDisconnected (an OSError) into its own ClientDisconnect,
    which is not one, when the scope says spec 2.4 (and with 2.3 its
    disconnect listener cancels the stream)."""
    mark = fastapi_server.log_mark()
    for _ in range(3):
        with httpx.stream("GET", fastapi_server.url("/stream?n=100&delay=0.02"), timeout=15) as r:
            for piece in r.iter_raw():
                if b"line 1" in piece:
                    break
    time.sleep(0.5)  # the app's next send() finds the client gone
    assert httpx.get(fastapi_server.url("/items/3")).status_code == 200
    log = fastapi_server.log_since(mark)
    assert '"level":"error"' not in log and "ClientDisconnect" not in log, log[-3000:]

def test_stream_idle_between_events_is_cancelled_when_the_client_leaves(fastapi_server):
    """Starlette cancels a StreamingResponse whose client left only when the
    scope's spec_version is below 2.4 (else it waits for send() to fail, at
    the next event, maybe never): the scope says 2.3, as uvicorn's does."""
    key = f"idle{time.monotonic_ns()}"
    with httpx.stream("GET", fastapi_server.url(f"/idle-stream/{key}"), timeout=15) as r:
        for piece in r.iter_raw():
            if b"first" in piece:
                break

    def cancelled():
        v = httpx.get(fastapi_server.url(f"/idle-stream-status/{key}"), timeout=10).json()
        return v if v == {"state": "cancelled", "finally": "ran"} else None

    wait_until(cancelled, 5.0, interval=0.1, message="the idle stream's cancellation")


def test_a_busy_stream_left_by_its_client_runs_its_finally_at_once(fastapi_server):
    """send() raises for a client that left; the generator, left at a yield,
    was held by the exception's frames in a reference cycle (anyio's task
    group keeps the exceptions it collects) until the cyclic GC ran: its
    finally (a cursor, a lock) waited that long. The driver clears those
    frames when the request's task ends."""
    key = f"busy{time.monotonic_ns()}"
    with httpx.stream("GET", fastapi_server.url(f"/busy-stream/{key}"), timeout=15) as r:
        got = 0
        for piece in r.iter_raw():
            got += len(piece)
            if got > 100_000:
                break

    def finished():
        v = httpx.get(fastapi_server.url(f"/idle-stream-status/{key}"), timeout=10).json()
        return v if v["finally"] == "ran" else None

    wait_until(finished, 2.0, interval=0.05, message="the busy stream's finally")


def test_background_tasks(fastapi_server):
    key = f"bg{time.monotonic_ns()}"
    r = httpx.post(fastapi_server.url(f"/background/{key}"), timeout=10)
    assert r.status_code == 200 and r.json() == {"scheduled": key}

    def done():
        v = httpx.get(fastapi_server.url(f"/background/{key}"), timeout=10).json()
        return v if v == {"value": "done", "async_value": "done"} else None

    wait_until(done, 5.0, interval=0.1, message="the background tasks' effect")


def test_lifespan_state_and_request_state(fastapi_server):
    for _ in range(3):
        r = httpx.get(fastapi_server.url("/state"), timeout=10)
        assert r.status_code == 200, r.text
        assert r.json() == {"db_name": "fake-db", "started_by": "fastapi-lifespan", "counter": 1,
                            "lifespan_events": ["startup"]}


def test_sync_endpoints_run_in_thread_pool(fastapi_server):
    # warm up the pool
    assert httpx.get(fastapi_server.url("/sync-sleep?t=0"), timeout=10).status_code == 200
    barrier = threading.Barrier(4)

    def one(_):
        with httpx.Client(timeout=15) as c:
            barrier.wait(10)
            return c.get(fastapi_server.url("/sync-sleep?t=0.5")).json()

    t0 = time.monotonic()
    with ThreadPoolExecutor(4) as ex:
        results = list(ex.map(one, range(4)))
    elapsed = time.monotonic() - t0
    assert all(r["slept"] == 0.5 for r in results)
    assert not any(r["main_loop_thread"] for r in results), "a sync endpoint ran on the event loop thread"
    assert elapsed < 1.6, f"4 concurrent 0.5s sync sleeps took {elapsed:.2f}s (serial would be 2s)"


def test_sync_endpoints_reuse_their_worker_threads(fastapi_server):
    """Sequential requests to a sync endpoint run on anyio's pooled worker
    thread, as under uvicorn: same thread, its threading.local state kept
    (per-thread DB connections, requests.Session). The loop ran without a
    root task, so anyio made each request's task the root and started (and
    stopped) a thread per request."""
    with httpx.Client(timeout=10) as c:
        seen = [c.get(fastapi_server.url("/sync-thread")).json() for _ in range(5)]
    assert len({s["thread"] for s in seen}) == 1, seen
    assert [s["served"] for s in seen] == list(range(seen[0]["served"], seen[0]["served"] + 5)), seen


def test_async_endpoint_not_blocked_by_sync_sleepers(fastapi_server):
    with ThreadPoolExecutor(3) as ex:
        slow = [ex.submit(httpx.get, fastapi_server.url("/sync-sleep?t=1.5"), timeout=15) for _ in range(2)]
        time.sleep(0.3)
        t0 = time.monotonic()
        r = httpx.get(fastapi_server.url("/text"), timeout=10)
        fast = time.monotonic() - t0
        assert r.status_code == 200 and r.text == "plain \u2603 text"
        assert fast < 0.8, f"an async endpoint waited {fast:.2f}s behind sync sleepers"
        assert all(f.result().status_code == 200 for f in slow)


def test_unhandled_exception_is_500_and_logged(fastapi_server):
    mark = fastapi_server.log_mark()
    r = httpx.get(fastapi_server.url("/error"), timeout=10)
    assert r.status_code == 500
    fastapi_server.wait_for_log("fastapi-error-marker", "Traceback", since=mark)
    assert httpx.get(fastapi_server.url("/items/5"), timeout=10).status_code == 200


def test_docs_page(fastapi_server):
    r = httpx.get(fastapi_server.url("/docs"), timeout=10)
    assert r.status_code == 200
    assert "swagger" in r.text.lower()
