"""An ASGI app that can keep the event loop busy: GET /spin?<seconds> starts a
task that computes for that long in 10 ms slices, yielding to the loop
between them, so the loop thread always has Python to run and lets go of
the GIL only for a moment per iteration (as under heavy load, when each
iteration runs many requests' steps). Any other path answers "ok".

The switch interval is raised so that CPython's own forced switch (every
5 ms by default) cannot be what lets another thread in while it spins."""

import asyncio
import sys
import time

sys.setswitchinterval(30.0)

_tasks = set()


async def _spin(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        slice_end = time.monotonic() + 0.01
        while time.monotonic() < slice_end:
            sum(range(200))
        await asyncio.sleep(0)


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/spin":
        task = asyncio.get_running_loop().create_task(_spin(float(scope["query_string"] or b"5")))
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})
