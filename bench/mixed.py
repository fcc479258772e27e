"""A WSGI app and an ASGI app served by one process, measured at once.

    bench/.venv/bin/python bench/mixed.py                    # ./caddy against the proxy pairs
    bench/.venv/bin/python bench/mixed.py A=./caddy.old B=./caddy --rounds 3

caddysnake serves every app of a Caddy from one interpreter, so a Flask app
and a FastAPI app share one GIL; behind Caddy, gunicorn and uvicorn are two
processes. This script serves Flask hello-JSON and FastAPI hello-JSON (the
apps of bench.py) from one Caddy each way and loads both at once, in two
shapes:

  busy-asgi   FastAPI at 50 connections, Flask at 1 (a light app next to a
              busy one: what the light app's users wait)
  both-busy   both at 50 connections

Each round runs every server once, in an order that flips every round; the
medians of req/s and p50/p99 per app follow, with each server's ratio to the
first. Given binaries (LABEL=PATH) replace the proxy pair: an A/B of builds.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

import bench
from ab import parse_builds

SHAPES = {"busy-asgi": (1, 50), "both-busy": (50, 50)}  # (wsgi conns, asgi conns)


def start_caddysnake(ctx: bench.Ctx, ports: Tuple[int, int]) -> List[bench.Proc]:
    """ctx.caddy serving Flask on ports[0] and FastAPI on ports[1]."""
    site = ""
    for port, app in zip(ports, ("flask", "fastapi")):
        target, iface = bench.APP_TARGETS[app]
        site += (f":{port} {{\n\tpython {{\n\t\tmodule_{iface} \"{target}\"\n"
                 f"\t\tworking_dir \"{bench.APPS}\"\n\t\tvenv \"{bench.VENV}\"\n\t}}\n}}\n")
    p = ctx.start_caddy("mixed-caddysnake", site)
    bench.wait_ready(ports[0], [p])
    bench.wait_ready(ports[1], [p])
    return [p]


def start_proxy_pair(ctx: bench.Ctx, ports: Tuple[int, int]) -> List[bench.Proc]:
    procs: List[bench.Proc] = []
    try:
        site = ""
        for port, app, kind, cmd in ((ports[0], "flask", "gunicorn", bench.gunicorn_cmd),
                                     (ports[1], "fastapi", "uvicorn", bench.uvicorn_cmd)):
            bport = bench.free_port()
            procs.append(bench.Proc(f"{kind}[mixed]", cmd(app, bport, "1proc"), bench.APPS, ctx.env,
                                    ctx.log(f"mixed-{kind}")))
            bench.wait_ready(bport, procs)
            site += bench.proxy_site(port, bport)
        procs.append(ctx.start_caddy("mixed-proxy", site))
        bench.wait_ready(ports[0], procs)
        bench.wait_ready(ports[1], procs)
    except Exception:
        for p in reversed(procs):
            p.stop()
        raise
    return procs


def load_both(ports: Tuple[int, int], conns: Tuple[int, int], duration: int) -> Dict[str, dict]:
    """wrk on both apps at once; the light one starts 1 s later and stops 1 s
    earlier, so all of its requests meet the busy one's load."""
    def cmd(port, c, d):
        return ["wrk", f"-t{min(2, c)}", f"-c{c}", f"-d{d}s", "--latency", "--timeout", "10s",
                f"http://127.0.0.1:{port}/"]
    busy = subprocess.Popen(cmd(ports[1], conns[1], duration + 2), stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1)
        light = subprocess.run(cmd(ports[0], conns[0], duration), capture_output=True, text=True,
                               timeout=duration + 30)
        out_busy, _ = busy.communicate(timeout=duration + 30)
    finally:
        if busy.poll() is None:
            busy.kill()
    return {"flask": bench.parse_wrk(light.stdout), "fastapi": bench.parse_wrk(out_busy)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("builds", nargs="*", help="LABEL=PATH of caddy binaries (default: ./caddy and the proxy pair)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=6)
    args = ap.parse_args()
    root = Path(__file__).resolve().parent.parent
    servers = parse_builds(ap, args.builds)
    if not servers:
        servers = [("caddysnake", (root / "caddy").resolve()), ("caddy+gunicorn/uvicorn", None)]
    elif len(servers) < 2:
        ap.error("give two or more builds, or none")
    tmp = Path(tempfile.mkdtemp(prefix="mixed-"))
    # One context per server, each with a private copy of its binary (a
    # rebuild cannot swap it mid-run); the proxy pair runs the first caddy.
    ctxs = []
    for i, (label, path) in enumerate(servers):
        d = tmp / f"server{i}"
        d.mkdir()
        ctxs.append((label, bench.Ctx(bench.snapshot_binary(path, d), d, d) if path else None))
    proxy_ctx = bench.Ctx(next(c for _, c in ctxs if c).caddy, tmp / "proxy", tmp)
    proxy_ctx.workdir.mkdir()
    samples: Dict[Tuple[str, str, str], List[dict]] = {}
    for r in range(args.rounds):
        order = ctxs if r % 2 == 0 else list(reversed(ctxs))
        for shape, conns in SHAPES.items():
            for label, ctx in order:
                ports = (bench.free_port(), bench.free_port())
                procs = start_caddysnake(ctx, ports) if ctx else start_proxy_pair(proxy_ctx, ports)
                try:
                    bench.wrk(ports[0], 10, 1, 1)
                    bench.wrk(ports[1], 10, 1, 1)
                    res = load_both(ports, conns, args.duration)
                finally:
                    for p in reversed(procs):
                        p.stop()
                for app, v in res.items():
                    samples.setdefault((shape, label, app), []).append(v)
                bench.say(f"round {r + 1} {shape:9s} {label:24s} "
                          + "  ".join(f"{a} {v['rps'] or 0:7.0f} req/s p99 {v['p99_ms']} ms" for a, v in res.items()))
    bench.say()
    for shape, conns in SHAPES.items():
        bench.say(f"{shape}: Flask at {conns[0]} connection(s), FastAPI at {conns[1]}, at once (medians)")
        base = {}
        for label, _ in ctxs:
            cells = []
            for app in ("flask", "fastapi"):
                vs = samples[(shape, label, app)]
                rps = bench.median([v["rps"] for v in vs])
                p50 = bench.median([v["p50_ms"] for v in vs])
                p99 = bench.median([v["p99_ms"] for v in vs])
                base.setdefault(app, rps)
                ratio = f" ({rps / base[app]:.2f}x)" if rps and base[app] else ""
                cells.append(f"{app} {bench.fmt(rps)} req/s{ratio} p50 {bench.fmt(p50, '.2f')} p99 {bench.fmt(p99, '.1f')} ms")
            bench.say(f"  {label:24s} " + "   ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
