"""Flask views that wait, compute, send a large body or stream small pieces
(bench/io_bench.py)."""

import time

from flask import Flask, Response, jsonify

app = Flask(__name__)
BIG = b"x" * (1 << 20)


def _spin(n):
    x = 0
    for i in range(n):
        x += i * i
    return x


@app.get("/sleep")
def sleep():
    """Waits 2 ms (GIL released), as on a quick database query."""
    time.sleep(0.002)
    return jsonify(ok=True)


@app.get("/mixed")
def mixed():
    """Waits 1 ms, then computes ~1 ms."""
    time.sleep(0.001)
    return jsonify(x=_spin(20000))


@app.get("/cpu")
def cpu():
    """Computes ~2 ms."""
    return jsonify(x=_spin(40000))


@app.get("/big")
def big():
    """A 1 MiB response."""
    return Response(BIG, mimetype="application/octet-stream")


@app.get("/stream")
def stream():
    """100 small pieces from a generator (server-sent events, a streamed
    template or CSV): each one a chunk of its own."""
    def gen():
        for i in range(100):
            yield b"data: %d\n\n" % i
    return Response(gen(), mimetype="text/event-stream")
