"""WSGI and ASGI apps of one Caddy share one GIL: a busy ASGI app must not
starve a WSGI app (caddysnake.c, loop_hand_over_gil).

This checks that WSGI requests are served while the loop thread is kept
busy (no deadlock in the hand-over, no WSGI request left waiting for the
spinner's end); how much faster the hand-over serves them is a timing
claim, measured by bench/mixed.py."""

import threading
import time

import httpx

from conftest import APPS_DIR, asgi_block, python_block

DIR = APPS_DIR / "gil_share"
SPIN = 20.0  # seconds the ASGI app keeps its loop busy


def test_wsgi_app_is_served_while_an_asgi_app_keeps_the_loop_busy(start_caddy):
    sites = ("http://:@PORT0@ {\n" + asgi_block("busy_asgi:app", DIR, venv=False) + "\n}\n"
             "http://:@PORT1@ {\n" + python_block("hello_wsgi:app", DIR, venv=False) + "\n}\n")
    srv = start_caddy("gil-share", sites=sites, nports=2)
    stop = threading.Event()

    def asgi_traffic():
        # Steady requests to the busy ASGI app, as a busy API would get.
        with httpx.Client(timeout=30) as c:
            while not stop.is_set():
                assert c.get(srv.url("/", 0)).text == "ok"

    try:
        assert httpx.get(srv.url("/", 1), timeout=10).text == "hello"
        assert httpx.get(srv.url(f"/spin?{SPIN}", 0), timeout=10).text == "ok"
        traffic = threading.Thread(target=asgi_traffic, daemon=True)
        traffic.start()
        t0 = time.monotonic()
        with httpx.Client(timeout=SPIN + 20) as c:
            for _ in range(10):
                r = c.get(srv.url("/", 1))
                assert (r.status_code, r.text) == (200, "hello")
        took = time.monotonic() - t0
        # Without the hand-over each request would wait for the 30 s switch
        # interval or the spinner's end; with it, milliseconds each. The
        # bound is far from both, so a slow machine cannot fail it.
        assert took < SPIN / 2, f"10 WSGI requests took {took:.1f}s next to a busy ASGI loop"
    finally:
        stop.set()
        srv.stop()
