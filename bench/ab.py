"""A/B two caddy builds on the same app, alternating, in one run.

    bench/.venv/bin/python bench/ab.py A=./caddy.old B=./caddy --app asgi_hello --pairs 4

Each pair starts build A, measures it with wrk, stops it, then does the same
with build B (the order flips every pair, so a machine that slows down during
the run hurts both alike). It prints every sample, then the medians of req/s,
p99 and the server's CPU per request, and B's ratio to A. This is how the
figures of "Tried and kept" in the README were taken: one binary's run on a
noisy, shared machine says little, two alternating in one run say more.

Apps are bench.py's (APP_TARGETS, POSTS); "respond" runs Caddy's own respond
with the given binaries.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import bench


def measure(ctx: bench.Ctx, label: str, app: str, conns: int, duration: int, warmup: int) -> dict:
    port = bench.free_port()
    launch = bench.launch_respond if app == "respond" else bench.launch_caddysnake(app)
    procs = launch(ctx, port)
    script = bench.post_script(ctx.workdir, app) if app in bench.POSTS else None
    try:
        if warmup:
            bench.wrk(port, conns, warmup, 2, script)
        with bench.CpuAccount([p.pid for p in procs]) as acct:
            res = bench.wrk(port, conns, duration, 2, script)
    finally:
        for p in procs:
            p.stop()
    rps = res["rps"] or 0.0
    us = acct.result["server_cores"] * 1e6 / rps if rps else None
    return {"label": label, "rps": rps, "p99_ms": res["p99_ms"], "errors": res["errors"], "cpu_us": us}


def parse_builds(ap: argparse.ArgumentParser, specs: list) -> list:
    """[(label, resolved path)] from LABEL=PATH arguments naming caddy binaries
    (also used by mixed.py)."""
    builds = []
    for b in specs:
        label, _, path = b.partition("=")
        if not path or not Path(path).is_file():
            ap.error(f"{b}: want LABEL=PATH to a caddy binary")
        builds.append((label, Path(path).resolve()))
    return builds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("builds", nargs=2, help="LABEL=PATH of two caddy binaries")
    ap.add_argument("--app", default="asgi_hello", help="a bench.py app key, or respond (default asgi_hello)")
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--conns", type=int, default=100)
    ap.add_argument("--duration", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args()
    builds = parse_builds(ap, args.builds)

    with tempfile.TemporaryDirectory(prefix="cs-ab-") as tmp:
        work = Path(tmp)
        ctxs = {}
        for label, path in builds:
            # A private copy, so a rebuild during the run cannot swap it.
            copy = work / f"caddy-{label}"
            copy.write_bytes(path.read_bytes())
            copy.chmod(0o755)
            (work / label).mkdir()
            ctxs[label] = bench.Ctx(copy, work / label, work / label)
        samples = {label: [] for label, _ in builds}
        for i in range(args.pairs):
            order = builds if i % 2 == 0 else builds[::-1]
            for label, _ in order:
                s = measure(ctxs[label], label, args.app, args.conns, args.duration, args.warmup)
                samples[label].append(s)
                cpu = f"{s['cpu_us']:.1f}" if s["cpu_us"] else "-"
                print(f"pair {i + 1} {label:>8}: {s['rps']:9.0f} req/s  p99 {s['p99_ms']} ms  "
                      f"cpu {cpu} us/req  errors {s['errors']}", flush=True)
                time.sleep(0.5)

    print(f"\n{args.app}, {args.conns} connections, {args.pairs} pairs of {args.duration} s: medians")
    med = {}
    for label, _ in builds:
        ss = samples[label]
        med[label] = {k: bench.median([s[k] for s in ss]) for k in ("rps", "p99_ms", "cpu_us")}
        rng = f"{min(s['rps'] for s in ss):.0f}-{max(s['rps'] for s in ss):.0f}"
        print(f"  {label:>8}: {med[label]['rps']:9.0f} req/s (range {rng})  p99 {med[label]['p99_ms']} ms  "
              f"cpu {med[label]['cpu_us'] or 0:.1f} us/req")
    (a, _), (b, _) = builds
    if med[a]["rps"]:
        print(f"  {b} / {a}: {med[b]['rps'] / med[a]['rps']:.3f}x req/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
