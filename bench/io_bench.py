#!/usr/bin/env python3
"""WSGI apps that wait: caddysnake against Caddy -> gunicorn and Granian.

    bench/.venv/bin/python bench/io_bench.py [--caddy ./caddy] [--rounds 3]

Serves bench/apps/flask_io.py (views that wait 2 ms, wait 1 ms then compute
1 ms, compute 2 ms, send 1 MiB, and stream 100 small pieces) with the same thread count everywhere
(--threads, default 4: caddysnake `threads`, gunicorn gthread `--threads`,
Granian `--blocking-threads`), one Python process each, and alternates the
three servers in rounds. Prints median req/s and p99 per view, and the ratio
of caddysnake to each peer. Needs what bench/run installs (wrk, bench/.venv).
"""

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BENCH = Path(__file__).resolve().parent
APPS = BENCH / "apps"
VPY = BENCH / ".venv" / "bin" / "python"
VIEWS = ["sleep", "mixed", "cpu", "big", "stream"]
CADDY_PORT, PROXY_PORT, GUNICORN_PORT, GRANIAN_PORT = 9481, 9482, 9483, 9484


def caddyfile(site: str) -> str:
    return "{\n\tadmin off\n\tauto_https off\n\tpersist_config off\n}\n" + site


CONFIG_DIR = tempfile.TemporaryDirectory(prefix="io_bench-")  # removed at exit


def start(cmd, cfg_text=None):
    if cfg_text is not None:
        path = Path(CONFIG_DIR.name) / f"{abs(hash(cfg_text))}.caddyfile"
        path.write_text(cfg_text)
        cmd = cmd + ["--config", str(path), "--adapter", "caddyfile"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def wait_ready(port, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/sleep", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"server on port {port} did not answer within {timeout}s")


def stop(procs):
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def wrk(port, view, conns, secs):
    url = f"http://127.0.0.1:{port}/{view}"
    subprocess.run(["wrk", "-t2", f"-c{conns}", "-d1s", url], capture_output=True)  # warm-up
    out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{secs}s", "--latency", url],
                         capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)] if m else None
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors", out)
    return rps, p99, bool(bad)


def servers(args):
    t = str(args.threads)
    site = (f"http://127.0.0.1:{CADDY_PORT} {{\n\tpython {{\n\t\tmodule_wsgi \"flask_io:app\"\n"
            f"\t\tworking_dir {APPS}\n\t\tvenv {BENCH / '.venv'}\n\t\tthreads {t}\n\t}}\n}}\n")
    proxy = f"http://127.0.0.1:{PROXY_PORT} {{\n\treverse_proxy 127.0.0.1:{GUNICORN_PORT}\n}}\n"
    return {
        "caddysnake": (CADDY_PORT, lambda: [start([args.caddy, "run"], caddyfile(site))]),
        "caddy->gunicorn": (PROXY_PORT, lambda: [
            start([str(VPY), "-m", "gunicorn", "-k", "gthread", "-w", "1", "--threads", t,
                   "-b", f"127.0.0.1:{GUNICORN_PORT}", "--chdir", str(APPS), "--log-level", "warning",
                   "flask_io:app"]),
            start([args.caddy, "run"], caddyfile(proxy))]),
        "granian": (GRANIAN_PORT, lambda: [
            start([str(VPY), "-m", "granian", "--interface", "wsgi", "--workers", "1",
                   "--blocking-threads", t, "--host", "127.0.0.1", "--port", str(GRANIAN_PORT),
                   "--working-dir", str(APPS), "--log-level", "warning", "flask_io:app"])]),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--caddy", default=str(BENCH.parent / "caddy"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=4, help="seconds per measurement")
    ap.add_argument("--connections", type=int, default=100)
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args()
    if not VPY.exists():
        sys.exit("bench/.venv is missing: run bench/run once (it installs wrk and the venv)")
    srv = servers(args)
    res = {(s, v): [] for s in srv for v in VIEWS}
    for r in range(args.rounds):
        for name, (port, launch) in srv.items():
            procs = launch()
            try:
                wait_ready(port)
                for v in VIEWS:
                    rps, p99, bad = wrk(port, v, args.connections, args.duration)
                    res[(name, v)].append((rps, p99, bad))
                    print(f"round {r + 1} {name:16} {v:6} {rps:8.0f} req/s  p99 {p99} ms{'  ERRORS' if bad else ''}",
                          flush=True)
            finally:
                stop(procs)
    print(f"\nmedians, {args.connections} connections, {args.threads} threads, one process each")
    print(f"{'view':8}" + "".join(f"{s:>26}" for s in srv) + "   caddysnake / gunicorn, / granian")
    for v in VIEWS:
        med = {s: statistics.median(x[0] for x in res[(s, v)]) for s in srv}
        p99 = {s: statistics.median(x[1] for x in res[(s, v)] if x[1] is not None) for s in srv}
        cells = "".join(f"{med[s]:>12.0f} (p99 {p99[s]:6.1f})" for s in srv)
        print(f"{v:8}{cells}   {med['caddysnake'] / med['caddy->gunicorn']:.2f}x, "
              f"{med['caddysnake'] / med['granian']:.2f}x")


if __name__ == "__main__":
    main()
