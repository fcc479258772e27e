#!/usr/bin/env python3
"""caddysnake benchmark driver (run it through bench/run, which installs what it needs).

Measures, on 127.0.0.1 and in one run:
  * Caddy `respond` (the ceiling, no Python);
  * caddysnake (Python embedded in Caddy) serving raw WSGI, Flask, Django, raw ASGI, FastAPI;
  * the same apps behind Caddy `reverse_proxy` -> gunicorn (gthread) / uvicorn;
  * the same apps on standalone Granian (WSGI and ASGI) and standalone uvicorn;
  * 100 MiB uploads/downloads (throughput and RSS growth of the server process tree).

Every throughput configuration runs in every round, in the same order (rounds
alternate the configurations so machine noise hits all of them alike); the
report uses medians across rounds.  See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
APPS = BENCH / "apps"
VENV = BENCH / ".venv"
VPY = Path(sys.executable)  # bench/run execs us with the venv's python
RESULTS = BENCH / "results"
CORES = os.cpu_count() or 1
MIB = 1024 * 1024

# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------


_HANDED_OUT: set = set()


def free_port() -> int:
    """A free loopback port never handed out before in this run: Caddy binds
    with SO_REUSEPORT, so two listeners given the same port would both bind
    and split the load between them."""
    port = 0
    while port == 0 or port in _HANDED_OUT:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    _HANDED_OUT.add(port)
    return port


def say(msg: str = "") -> None:
    print(msg, flush=True)


def note(msg: str) -> None:
    print(f"  · {msg}", file=sys.stderr, flush=True)


def run_text(cmd: List[str], **kw) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, **kw).stdout.strip()
    except Exception as exc:  # noqa: BLE001
        return f"unavailable ({exc})"


def median(xs: List[float]) -> Optional[float]:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# ---------------------------------------------------------------------------
# RSS of a process tree: every process in the process groups we created
# ---------------------------------------------------------------------------


def _group_members(pgids: set) -> List[int]:
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        # fields: state ppid pgrp ...
        if int(fields[2]) in pgids:
            out.append(int(name))
    return out


def _vmrss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


_HZ = os.sysconf("SC_CLK_TCK")


def _cpu_busy_s() -> float:
    """Machine-wide busy CPU seconds (all cores) from /proc/stat."""
    with open("/proc/stat") as f:
        vals = [int(v) for v in f.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return (sum(vals[:8]) - idle) / _HZ


def _group_cpu_s(pgids: set) -> float:
    total = 0
    for pid in _group_members(pgids):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        total += int(fields[11]) + int(fields[12])
    return total / _HZ


class CpuAccount:
    """CPU used during a measurement: by the server tree, by wrk, by this driver, and by
    everything else on the machine ("other", i.e. noise from processes that are not ours)."""

    def __init__(self, pgids: List[int]):
        self.pgids = set(pgids)

    def __enter__(self):
        import resource
        self._r = resource
        self.t0 = time.monotonic()
        self.busy0 = _cpu_busy_s()
        self.srv0 = _group_cpu_s(self.pgids)
        ch = resource.getrusage(resource.RUSAGE_CHILDREN)
        me = resource.getrusage(resource.RUSAGE_SELF)
        self.ch0 = ch.ru_utime + ch.ru_stime
        self.me0 = me.ru_utime + me.ru_stime
        return self

    def __exit__(self, *exc):
        r = self._r
        dt = max(time.monotonic() - self.t0, 1e-6)
        busy = _cpu_busy_s() - self.busy0
        srv = _group_cpu_s(self.pgids) - self.srv0
        ch = r.getrusage(r.RUSAGE_CHILDREN)
        me = r.getrusage(r.RUSAGE_SELF)
        client = ch.ru_utime + ch.ru_stime - self.ch0
        me_s = me.ru_utime + me.ru_stime - self.me0
        self.result = {
            "server_cores": round(srv / dt, 3),
            "wrk_cores": round(client / dt, 3),
            "driver_cores": round(me_s / dt, 3),
            "other_cores": round(max(0.0, busy - srv - client - me_s) / dt, 3),
            "machine_busy_pct": round(100 * busy / dt / CORES, 1),
        }
        return False


class RssSampler:
    """Samples the summed VmRSS of every process in the given process groups.

    The process list is refreshed every `rescan` seconds (a /proc scan); VmRSS
    of the known members is read every `interval` seconds.
    """

    def __init__(self, pgids: List[int], interval: float, rescan: float = 0.25):
        self.pgids = set(pgids)
        self.interval = interval
        self.rescan = rescan
        self.samples: List[tuple] = []  # (t, kib, nprocs)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._mark_peak = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "RssSampler":
        self._members = _group_members(self.pgids)
        self._last_scan = time.monotonic()
        self._thread.start()
        return self

    def now_kib(self) -> int:
        return sum(_vmrss_kib(p) for p in _group_members(self.pgids))

    def _run(self) -> None:
        while not self._stop.is_set():
            t = time.monotonic()
            if t - self._last_scan >= self.rescan:
                self._members = _group_members(self.pgids)
                self._last_scan = t
            kib = sum(_vmrss_kib(p) for p in self._members)
            with self._lock:
                self.samples.append((t, kib, len(self._members)))
                self._mark_peak = max(self._mark_peak, kib)
            self._stop.wait(self.interval)

    def mark(self) -> None:
        """Start a new peak window."""
        with self._lock:
            self._mark_peak = 0

    def window_peak(self) -> int:
        with self._lock:
            return self._mark_peak

    def peak(self) -> int:
        with self._lock:
            return max((s[1] for s in self.samples), default=0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


# ---------------------------------------------------------------------------
# servers
# ---------------------------------------------------------------------------


class StartError(RuntimeError):
    pass


class Proc:
    def __init__(self, name: str, cmd: List[str], cwd: Path, env: Dict[str, str], log: Path):
        self.name, self.cmd, self.log = name, cmd, log
        self.logf = open(log, "ab")
        self.logf.write(f"\n=== {time.strftime('%H:%M:%S')} $ {' '.join(cmd)}\n".encode())
        self.logf.flush()
        self.p = subprocess.Popen(cmd, cwd=str(cwd), env=env, stdout=self.logf, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self.p.pid  # == its process group id (new session)

    def alive(self) -> bool:
        return self.p.poll() is None

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        if self.p.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                note(f"{self.name} (pid {self.pid}) ignored SIGTERM for {timeout}s: SIGKILL")
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.p.wait(5)
        # workers left behind in the group we created (e.g. a dead master's children)
        for pid in _group_members({self.pid}):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.logf.close()
        return self.p.returncode


def wait_ready(port: int, procs: List[Proc], path: str = "/", timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        for pr in procs:
            if not pr.alive():
                raise StartError(f"{pr.name} exited with {pr.p.returncode} during start-up:\n{pr.log_tail()}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            c.close()
            if r.status < 500:
                return
            last = f"HTTP {r.status}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.05)
    raise StartError(f"port {port} not ready after {timeout}s ({last}):\n" +
                     "\n".join(p.log_tail() for p in procs))


class Ctx:
    """Per-run state shared by the launchers."""

    def __init__(self, caddy: Path, workdir: Path, logdir: Path):
        self.caddy = caddy
        self.workdir = workdir
        self.logdir = logdir
        self.env = dict(os.environ)
        self.env.pop("CADDY_ADMIN", None)
        self.env["XDG_CONFIG_HOME"] = str(workdir / "xdg-config")
        self.env["XDG_DATA_HOME"] = str(workdir / "xdg-data")
        self.env["PYTHONDONTWRITEBYTECODE"] = "1"
        self.env["PATH"] = f"{VENV / 'bin'}:{self.env.get('PATH', '')}"
        self.env.pop("PYTHONPATH", None)
        self.seq = 0

    def log(self, name: str) -> Path:
        return self.logdir / f"{name}.log"

    def caddyfile(self, name: str, site: str) -> Path:
        self.seq += 1
        text = (
            "{\n\tadmin off\n\tauto_https off\n\tpersist_config off\n\tdefault_bind 127.0.0.1\n"
            "\tgrace_period 2s\n\tlog {\n\t\toutput stderr\n\t\tformat console\n\t}\n}\n" + site
        )
        path = self.workdir / f"{name}.Caddyfile"
        path.write_text(text)
        return path

    def start_caddy(self, name: str, site: str) -> Proc:
        cf = self.caddyfile(name, site)
        return Proc(f"caddy[{name}]", [str(self.caddy), "run", "--config", str(cf), "--adapter", "caddyfile"],
                    self.workdir, self.env, self.log(name))


PROXY_TRANSPORT = "\t\ttransport http {\n\t\t\tkeepalive_idle_conns_per_host 128\n\t\t}\n"


def proxy_site(port: int, backend: int) -> str:
    return f":{port} {{\n\treverse_proxy 127.0.0.1:{backend} {{\n{PROXY_TRANSPORT}\t}}\n}}\n"


@dataclass
class Config:
    key: str            # unique id
    app: str            # respond | wsgi_hello | flask | django | asgi_hello | fastapi | bigbody
    server: str         # caddy-respond | caddysnake | caddy+gunicorn | granian | caddy+uvicorn | uvicorn
    setting: str        # 1proc | prod | -
    desc: str           # human-readable settings
    launch: Callable[["Ctx", int], List[Proc]]
    expect: bytes = b""
    kind: str = "wsgi"  # wsgi | asgi | none


# app key -> (python module:attr, interface)
APP_TARGETS = {
    "wsgi_hello": ("wsgi_hello:app", "wsgi"),
    "flask": ("flask_hello:app", "wsgi"),
    "django": ("django_wsgi:application", "wsgi"),
    "asgi_hello": ("asgi_hello:app", "asgi"),
    "fastapi": ("fastapi_hello:app", "asgi"),
    "flask_post": ("flask_hello:app", "wsgi"),
    "fastapi_post": ("fastapi_hello:app", "asgi"),
    "wsgi_upload": ("wsgi_bigbody:app", "wsgi"),
    "asgi_upload": ("asgi_bigbody:app", "asgi"),
    "bigwsgi": ("wsgi_bigbody:app", "wsgi"),
    "bigasgi": ("asgi_bigbody:app", "asgi"),
}
APP_LABEL = {
    "respond": "Caddy respond",
    "wsgi_hello": "raw WSGI hello",
    "flask": "Flask JSON",
    "django": "Django JSON",
    "asgi_hello": "raw ASGI hello",
    "fastapi": "FastAPI JSON",
    "flask_post": "Flask JSON POST",
    "fastapi_post": "FastAPI JSON POST",
    "wsgi_upload": "raw WSGI 64 KiB upload",
    "asgi_upload": "raw ASGI 64 KiB upload",
}
EXPECT = {
    "respond": b"Hello, world!",
    "wsgi_hello": b"Hello, world!",
    "asgi_hello": b"Hello, world!",
    "flask": b'"message"',
    "django": b'"message"',
    "fastapi": b'"message"',
    "flask_post": b'"received":200',
    "fastapi_post": b'"received":200',
    "wsgi_upload": b"65536",
    "asgi_upload": b"65536",
}

# Apps measured with a POST: app -> (path, content type, body). The JSON posts send a
# 918-byte document (a name and 200 numbers) to /items, which the app parses (Flask:
# get_json; FastAPI: a pydantic model) and summarizes. The uploads send 64 KiB, which the
# big-body apps read whole (WSGI: read(64 KiB); ASGI: receive() to the end) and count.
JSON_BODY = json.dumps({"name": "bench", "items": list(range(200))}).encode()
UPLOAD_BODY = b"x" * (64 * 1024)
POSTS = {
    "flask_post": ("/items", "application/json", JSON_BODY),
    "fastapi_post": ("/items", "application/json", JSON_BODY),
    "wsgi_upload": ("/upload", "application/octet-stream", UPLOAD_BODY),
    "asgi_upload": ("/upload", "application/octet-stream", UPLOAD_BODY),
}

GUNICORN = {"1proc": ["-w", "1", "--threads", "4"],
            "prod": ["-w", str(2 * CORES + 1), "--threads", "2"]}
UVICORN_WORKERS = {"1proc": 1, "prod": CORES}
GRANIAN_WORKERS = {"1proc": 1, "prod": CORES}
CS_THREADS = max(4, 2 * CORES)


def launch_respond(ctx: Ctx, port: int) -> List[Proc]:
    p = ctx.start_caddy("caddy-respond", f':{port} {{\n\trespond "Hello, world!"\n}}\n')
    wait_ready(port, [p])
    return [p]


def launch_caddysnake(app: str) -> Callable:
    target, iface = APP_TARGETS[app]

    def go(ctx: Ctx, port: int) -> List[Proc]:
        site = (f":{port} {{\n\tpython {{\n\t\tmodule_{iface} \"{target}\"\n"
                f"\t\tworking_dir \"{APPS}\"\n\t\tvenv \"{VENV}\"\n\t}}\n}}\n")
        p = ctx.start_caddy(f"caddysnake-{app}", site)
        wait_ready(port, [p])
        return [p]
    return go


_GUNICORN_EXTRA: Optional[List[str]] = None


def gunicorn_extra() -> List[str]:
    """gunicorn >= 25 opens a control socket under ~/.gunicorn by default: turn it off."""
    global _GUNICORN_EXTRA
    if _GUNICORN_EXTRA is None:
        helptext = run_text([str(VPY), "-m", "gunicorn", "--help"])
        _GUNICORN_EXTRA = ["--no-control-socket"] if "--no-control-socket" in helptext else []
    return _GUNICORN_EXTRA


def gunicorn_cmd(app: str, port: int, setting: str) -> List[str]:
    target, _ = APP_TARGETS[app]
    return [str(VPY), "-m", "gunicorn", "-k", "gthread", *GUNICORN[setting], "-b", f"127.0.0.1:{port}",
            "--chdir", str(APPS), "--log-level", "warning", *gunicorn_extra(), target]


def uvicorn_cmd(app: str, port: int, setting: str) -> List[str]:
    target, _ = APP_TARGETS[app]
    return [str(VPY), "-m", "uvicorn", "--http", "httptools", "--loop", "uvloop", "--workers",
            str(UVICORN_WORKERS[setting]), "--host", "127.0.0.1", "--port", str(port), "--app-dir", str(APPS),
            "--no-access-log", "--log-level", "warning", target]


def granian_cmd(app: str, port: int, setting: str) -> List[str]:
    target, iface = APP_TARGETS[app]
    return [str(VPY), "-m", "granian", "--interface", iface, "--workers", str(GRANIAN_WORKERS[setting]),
            "--host", "127.0.0.1", "--port", str(port), "--working-dir", str(APPS), "--no-access-log",
            "--log-level", "warning", target]


def launch_backend(kind: str, app: str, setting: str, proxied: bool) -> Callable:
    builder = {"gunicorn": gunicorn_cmd, "uvicorn": uvicorn_cmd, "granian": granian_cmd}[kind]

    def go(ctx: Ctx, port: int) -> List[Proc]:
        bport = free_port() if proxied else port
        name = f"{'caddy+' if proxied else ''}{kind}-{app}-{setting}"
        procs = [Proc(f"{kind}[{name}]", builder(app, bport, setting), APPS, ctx.env, ctx.log(name))]
        try:
            wait_ready(bport, procs)
            if proxied:
                procs.append(ctx.start_caddy(name, proxy_site(port, bport)))
                wait_ready(port, procs)
        except Exception:
            for p in reversed(procs):
                p.stop()
            raise
        return procs
    return go


def settings_desc(server: str, setting: str, iface: str) -> str:
    if server == "caddysnake":
        return (f"1 interpreter, threads={CS_THREADS} (default)" if iface == "wsgi"
                else "1 interpreter, event loop auto (uvloop), lifespan off")
    if server == "caddy-respond":
        return "static respond"
    if server == "caddy+gunicorn":
        return "gunicorn gthread " + " ".join(GUNICORN[setting])
    if server == "caddy+uvicorn" or server == "uvicorn":
        return f"uvicorn httptools+uvloop --workers {UVICORN_WORKERS[setting]}"
    if server.startswith("granian"):
        return f"granian --interface {iface} --workers {GRANIAN_WORKERS[setting]}"
    return setting


def throughput_configs() -> List[Config]:
    cfgs: List[Config] = []

    def add(app, server, setting, launch):
        iface = APP_TARGETS[app][1] if app in APP_TARGETS else "none"
        key = f"{server}/{app}" + (f"/{setting}" if setting != "-" else "")
        cfgs.append(Config(key, app, server, setting, settings_desc(server, setting, iface), launch,
                           EXPECT[app], iface))

    add("respond", "caddy-respond", "-", launch_respond)
    for app in ("wsgi_hello", "flask", "django"):
        add(app, "caddysnake", "-", launch_caddysnake(app))
    for setting in ("1proc", "prod"):
        for app in ("wsgi_hello", "flask", "django"):
            add(app, "caddy+gunicorn", setting, launch_backend("gunicorn", app, setting, True))
        for app in ("wsgi_hello", "flask", "django"):
            add(app, "granian", setting, launch_backend("granian", app, setting, False))
    # A small JSON post, one process each (what reading a request body costs).
    add("flask_post", "caddysnake", "-", launch_caddysnake("flask_post"))
    add("flask_post", "caddy+gunicorn", "1proc", launch_backend("gunicorn", "flask_post", "1proc", True))
    add("flask_post", "granian", "1proc", launch_backend("granian", "flask_post", "1proc", False))
    # A 64 KiB upload, one process each (what reading a larger body costs).
    add("wsgi_upload", "caddysnake", "-", launch_caddysnake("wsgi_upload"))
    add("wsgi_upload", "caddy+gunicorn", "1proc", launch_backend("gunicorn", "wsgi_upload", "1proc", True))
    add("wsgi_upload", "granian", "1proc", launch_backend("granian", "wsgi_upload", "1proc", False))
    for app in ("asgi_hello", "fastapi"):
        add(app, "caddysnake", "-", launch_caddysnake(app))
    for setting in ("1proc", "prod"):
        for app in ("asgi_hello", "fastapi"):
            add(app, "caddy+uvicorn", setting, launch_backend("uvicorn", app, setting, True))
        for app in ("asgi_hello", "fastapi"):
            add(app, "granian", setting, launch_backend("granian", app, setting, False))
        for app in ("asgi_hello", "fastapi"):
            add(app, "uvicorn", setting, launch_backend("uvicorn", app, setting, False))
    add("fastapi_post", "caddysnake", "-", launch_caddysnake("fastapi_post"))
    for server, kind, proxied in (("caddy+uvicorn", "uvicorn", True), ("granian", "granian", False),
                                  ("uvicorn", "uvicorn", False)):
        add("fastapi_post", server, "1proc", launch_backend(kind, "fastapi_post", "1proc", proxied))
    add("asgi_upload", "caddysnake", "-", launch_caddysnake("asgi_upload"))
    for server, kind, proxied in (("caddy+uvicorn", "uvicorn", True), ("granian", "granian", False),
                                  ("uvicorn", "uvicorn", False)):
        add("asgi_upload", server, "1proc", launch_backend(kind, "asgi_upload", "1proc", proxied))
    return cfgs


def bigbody_configs() -> List[Config]:
    def c(key, server, app, launch, desc):
        return Config(key, app, server, "1proc", desc, launch, b"", APP_TARGETS[app][1])
    return [
        c("caddysnake/wsgi", "caddysnake", "bigwsgi", launch_caddysnake("bigwsgi"),
          settings_desc("caddysnake", "-", "wsgi")),
        c("caddysnake/asgi", "caddysnake", "bigasgi", launch_caddysnake("bigasgi"),
          settings_desc("caddysnake", "-", "asgi")),
        c("caddy+gunicorn", "caddy+gunicorn", "bigwsgi", launch_backend("gunicorn", "bigwsgi", "1proc", True),
          settings_desc("caddy+gunicorn", "1proc", "wsgi")),
        c("caddy+uvicorn", "caddy+uvicorn", "bigasgi", launch_backend("uvicorn", "bigasgi", "1proc", True),
          settings_desc("caddy+uvicorn", "1proc", "asgi")),
        c("granian/wsgi", "granian", "bigwsgi", launch_backend("granian", "bigwsgi", "1proc", False),
          settings_desc("granian", "1proc", "wsgi")),
        c("granian/asgi", "granian", "bigasgi", launch_backend("granian", "bigasgi", "1proc", False),
          settings_desc("granian", "1proc", "asgi")),
    ]


# ---------------------------------------------------------------------------
# wrk
# ---------------------------------------------------------------------------

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def _ms(text: str) -> Optional[float]:
    m = re.match(r"([\d.]+)(us|ms|s|m|h)$", text.strip())
    return float(m.group(1)) * _UNITS[m.group(2)] if m else None


def parse_wrk(out: str) -> Dict:
    res: Dict = {"rps": None, "p50_ms": None, "p75_ms": None, "p90_ms": None, "p99_ms": None,
                 "requests": None, "non2xx": 0, "sock_connect": 0, "sock_read": 0, "sock_write": 0,
                 "sock_timeout": 0}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        res["rps"] = float(m.group(1))
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.M)
        if m:
            res[f"p{pct}_ms"] = _ms(m.group(1))
    m = re.search(r"(\d+) requests in", out)
    if m:
        res["requests"] = int(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if m:
        res["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        res["sock_connect"], res["sock_read"], res["sock_write"], res["sock_timeout"] = map(int, m.groups())
    res["errors"] = res["non2xx"] + res["sock_connect"] + res["sock_read"] + res["sock_write"] + res["sock_timeout"]
    return res


def post_script(workdir: Path, app: str) -> Path:
    """A wrk script that sends the app's POST (POSTS)."""
    path, ctype, body = POSTS[app]
    script = workdir / f"post_{app}.lua"
    if not script.exists():
        if body == b"x" * len(body):
            lua_body = f'string.rep("x", {len(body)})'
        else:
            lua_body = f"[[{body.decode()}]]"
        script.write_text(f'wrk.method = "POST"\nwrk.path = "{path}"\n'
                          f'wrk.headers["Content-Type"] = "{ctype}"\n'
                          f'wrk.body = {lua_body}\n')
    return script


def wrk(port: int, conns: int, duration: int, threads: int, script: Optional[Path] = None) -> Dict:
    cmd = ["wrk", f"-t{max(1, min(threads, conns))}", f"-c{conns}", f"-d{int(duration)}s", "--latency",
           "--timeout", "5s", *(["-s", str(script)] if script else []), f"http://127.0.0.1:{port}/"]
    try:
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30)
        out = cp.stdout + cp.stderr
    except subprocess.TimeoutExpired as exc:
        out = f"wrk timed out: {exc}"
    res = parse_wrk(out)
    if res["rps"] is None:
        res["raw"] = out[-2000:]
    return res


def check_response(port: int, expect: bytes, post: Optional[str] = None) -> Optional[str]:
    """One GET / (or the app's POST measured): None when it is a 200 whose body contains
    `expect`, else a description."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        if post:
            path, ctype, body = POSTS[post]
            c.request("POST", path, body=body, headers={"Content-Type": ctype})
        else:
            c.request("GET", "/")
        r = c.getresponse()
        body = r.read()
        c.close()
    except OSError as exc:
        return f"request failed: {exc}"
    if r.status != 200 or expect not in body:
        return f"HTTP {r.status} body={body[:200]!r}"
    return None


# ---------------------------------------------------------------------------
# large bodies
# ---------------------------------------------------------------------------

CHUNK = 64 * 1024


def upload(port: int, size: int) -> Dict:
    block = memoryview(bytes(CHUNK))
    t0 = time.perf_counter()
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        c.putrequest("POST", "/upload")
        c.putheader("Content-Type", "application/octet-stream")
        c.putheader("Content-Length", str(size))
        c.endheaders()
        sent = 0
        while sent < size:
            n = min(CHUNK, size - sent)
            c.send(block[:n])
            sent += n
        r = c.getresponse()
        body = r.read()
        c.close()
    except OSError as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "seconds": time.perf_counter() - t0}
    dt = time.perf_counter() - t0
    ok = r.status == 200 and body.strip() == str(size).encode()
    return {"ok": ok, "status": r.status, "seconds": dt, "mib_s": size / MIB / dt,
            "error": None if ok else f"HTTP {r.status} body={body[:100]!r}"}


def download(port: int, size: int) -> Dict:
    buf = bytearray(1 << 20)
    got = 0
    t0 = time.perf_counter()
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        c.request("GET", f"/download?mib={size // MIB}")
        r = c.getresponse()
        while True:
            n = r.readinto(buf)
            if not n:
                break
            got += n
        c.close()
    except (OSError, http.client.HTTPException) as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "bytes": got,
                "seconds": time.perf_counter() - t0}
    dt = time.perf_counter() - t0
    ok = r.status == 200 and got == size
    return {"ok": ok, "status": r.status, "bytes": got, "seconds": dt, "mib_s": got / MIB / dt,
            "error": None if ok else f"HTTP {r.status}, {got} of {size} bytes"}


# ---------------------------------------------------------------------------
# the runs
# ---------------------------------------------------------------------------


def start(cfg: Config, ctx: Ctx):
    port = free_port()
    procs = cfg.launch(ctx, port)
    return port, procs


def stop_all(procs: List[Proc]) -> List[Optional[int]]:
    # front first (Caddy), then the backend
    codes = []
    for p in reversed(procs):
        codes.append(p.stop())
    return codes


def run_throughput(cfg: Config, ctx: Ctx, args) -> Dict:
    rec: Dict = {"round": None, "ok": True}
    try:
        port, procs = start(cfg, ctx)
    except Exception as exc:  # noqa: BLE001
        rec.update(ok=False, error=f"start failed: {exc}")
        return rec
    sampler = RssSampler([p.pid for p in procs], interval=0.1).start()
    try:
        post = cfg.app if cfg.app in POSTS else None
        script = post_script(ctx.workdir, post) if post else None
        rec["check"] = check_response(port, cfg.expect, post)
        if rec["check"]:
            rec["ok"] = False
        time.sleep(0.2)
        rec["rss_idle_mib"] = sampler.now_kib() / 1024
        if args.warmup > 0:
            wrk(port, max(args.conns), args.warmup, args.wrk_threads, script)
        rec["wrk"] = {}
        for conns in args.conns:
            with CpuAccount([p.pid for p in procs]) as acct:
                res = wrk(port, conns, args.duration, args.wrk_threads, script)
            res["cpu"] = acct.result
            rec["wrk"][str(conns)] = res
        rec["alive_after"] = all(p.alive() for p in procs)
        if not rec["alive_after"]:
            rec["ok"] = False
            rec["error"] = "server died during the measurement: " + "; ".join(
                f"{p.name} exit {p.p.returncode}" for p in procs if not p.alive())
            rec["log_tail"] = "\n".join(p.log_tail(30) for p in procs)
    finally:
        sampler.stop()
        rec["rss_peak_mib"] = sampler.peak() / 1024
        rec["nprocs"] = max((s[2] for s in sampler.samples), default=0)
        rec["exit_codes"] = stop_all(procs)
    return rec


def run_bigbody(cfg: Config, ctx: Ctx, args) -> Dict:
    rec: Dict = {"ok": True}
    size = args.big_mib * MIB
    try:
        port, procs = start(cfg, ctx)
    except Exception as exc:  # noqa: BLE001
        rec.update(ok=False, error=f"start failed: {exc}")
        return rec
    sampler = RssSampler([p.pid for p in procs], interval=0.02).start()
    try:
        # a small transfer each way first: code paths loaded, buffers warm
        rec["warm_upload"] = upload(port, MIB)
        rec["warm_download"] = download(port, MIB)
        for name, fn in (("upload", upload), ("download", download)):
            time.sleep(0.3)
            base = statistics.median([sampler.now_kib() for _ in range(5)])
            sampler.mark()
            res = fn(port, size)
            time.sleep(0.1)  # catch a peak that lands just after the response
            peak = max(sampler.window_peak(), base)
            time.sleep(0.4)
            after = sampler.now_kib()
            res.update(rss_base_mib=base / 1024, rss_peak_mib=peak / 1024, rss_growth_mib=(peak - base) / 1024,
                       rss_after_mib=after / 1024)
            rec[name] = res
            if not res["ok"]:
                rec["ok"] = False
            if not all(p.alive() for p in procs):
                rec["ok"] = False
                rec["error"] = f"server died during the {name}"
                rec["log_tail"] = "\n".join(p.log_tail(30) for p in procs)
                break
    finally:
        sampler.stop()
        rec["exit_codes"] = stop_all(procs)
    return rec


# ---------------------------------------------------------------------------
# reporting
# ---------------------------------------------------------------------------


# A round below this fraction of the same config's best round counts as stalled.
STALL_FRACTION = 0.2


def summarize(cfgs: List[Config], raw: Dict[str, List[Dict]], conns_list: List[int]) -> Dict:
    med: Dict = {}
    for cfg in cfgs:
        recs = raw.get(cfg.key, [])
        m: Dict = {"app": cfg.app, "server": cfg.server, "setting": cfg.setting, "settings": cfg.desc,
                   "rounds": len(recs), "failed_rounds": sum(1 for r in recs if not r.get("ok")),
                   "rss_peak_mib": median([r.get("rss_peak_mib") for r in recs]),
                   "rss_idle_mib": median([r.get("rss_idle_mib") for r in recs]), "by_conns": {}}
        for conns in conns_list:
            ws = [r["wrk"][str(conns)] for r in recs if r.get("wrk") and str(conns) in r["wrk"]]
            # A round far below the config's best one is a stall (seen with gunicorn's gthread
            # worker behind Caddy: requests parked on kept-alive upstream connections), not
            # its speed: it is left out of the medians and reported, for every server alike.
            best = max((w["rps"] or 0 for w in ws), default=0)
            live = [w for w in ws if (w["rps"] or 0) >= STALL_FRACTION * best]
            m["by_conns"][str(conns)] = {
                "rps": median([w["rps"] for w in live]),
                "p50_ms": median([w["p50_ms"] for w in live]),
                "p99_ms": median([w["p99_ms"] for w in live]),
                "stalled_rounds": len(ws) - len(live),
                "errors_total": sum(w["errors"] for w in ws),
                "non2xx_total": sum(w["non2xx"] for w in ws),
                "socket_errors_total": sum(w["errors"] - w["non2xx"] for w in ws),
                "requests_total": sum(w["requests"] or 0 for w in ws),
                "samples_rps": [w["rps"] for w in ws],
                "server_cores": median([w.get("cpu", {}).get("server_cores") for w in live]),
                "other_cores_max": max((w.get("cpu", {}).get("other_cores", 0) for w in ws), default=None),
            }
        med[cfg.key] = m
    return med


def fmt(x: Optional[float], spec: str = ".0f") -> str:
    return "—" if x is None else format(x, spec)


def print_table(cfgs: List[Config], med: Dict, conns: int) -> None:
    hdr = f"{'config':<34} {'settings':<46} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>8} {'RSS MiB':>8} {'cores':>6}"
    say(f"\n## Throughput, {conns} connections (medians over rounds; errors summed; RSS = peak of the server "
        "process tree; cores = CPU cores the server tree used)")
    say(hdr)
    say("-" * len(hdr))
    last_group = None
    for cfg in cfgs:
        group = "ASGI" if cfg.kind == "asgi" else "WSGI" if cfg.kind == "wsgi" else "-"
        if last_group is not None and group != last_group:
            say("")
        last_group = group
        m = med[cfg.key]
        b = m["by_conns"][str(conns)]
        err = f"{b['errors_total']}"
        if m["failed_rounds"]:
            err += f" !{m['failed_rounds']}fail"
        if b.get("stalled_rounds"):
            err += f" !{b['stalled_rounds']}stall"
        say(f"{cfg.key:<34} {cfg.desc[:46]:<46} {fmt(b['rps']):>9} {fmt(b['p50_ms'], '.2f'):>8} "
            f"{fmt(b['p99_ms'], '.2f'):>8} {err:>8} {fmt(m['rss_peak_mib'], '.1f'):>8} "
            f"{fmt(b.get('server_cores'), '.2f'):>6}")


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a is not None and b else None


def evaluate_targets(med: Dict, big: Dict, conns_list: List[int]) -> List[Dict]:
    out: List[Dict] = []

    def rps(key, conns):
        return med.get(key, {}).get("by_conns", {}).get(str(conns), {}).get("rps")

    def p99(key, conns):
        return med.get(key, {}).get("by_conns", {}).get(str(conns), {}).get("p99_ms")

    specs = [
        ("raw WSGI hello  vs Caddy->gunicorn", "caddysnake/wsgi_hello", "caddy+gunicorn/wsgi_hello/{s}", 2.0),
        ("raw WSGI hello  vs Granian WSGI", "caddysnake/wsgi_hello", "granian/wsgi_hello/{s}", 1.0),
        ("raw WSGI hello  vs Caddy respond", "caddysnake/wsgi_hello", "caddy-respond/respond", 0.60),
        ("raw ASGI hello  vs Caddy->uvicorn", "caddysnake/asgi_hello", "caddy+uvicorn/asgi_hello/{s}", 2.0),
        ("raw ASGI hello  vs Granian ASGI", "caddysnake/asgi_hello", "granian/asgi_hello/{s}", 1.0),
        ("raw ASGI hello  vs Caddy respond", "caddysnake/asgi_hello", "caddy-respond/respond", 0.60),
        ("Flask JSON      vs Caddy->gunicorn Flask", "caddysnake/flask", "caddy+gunicorn/flask/{s}", 1.5),
        ("FastAPI JSON    vs Caddy->uvicorn FastAPI", "caddysnake/fastapi", "caddy+uvicorn/fastapi/{s}", 1.5),
        # Not targets of the issue (which names hello-JSON): the same bar, for a small POST.
        ("Flask POST      vs Caddy->gunicorn (info)", "caddysnake/flask_post", "caddy+gunicorn/flask_post/{s}", 1.5),
        ("FastAPI POST    vs Caddy->uvicorn (info)", "caddysnake/fastapi_post", "caddy+uvicorn/fastapi_post/{s}", 1.5),
        # A 64 KiB upload against the hello bars.
        ("WSGI upload     vs Caddy->gunicorn (info)", "caddysnake/wsgi_upload", "caddy+gunicorn/wsgi_upload/{s}", 2.0),
        ("WSGI upload     vs Granian WSGI (info)", "caddysnake/wsgi_upload", "granian/wsgi_upload/{s}", 1.0),
        ("ASGI upload     vs Caddy->uvicorn (info)", "caddysnake/asgi_upload", "caddy+uvicorn/asgi_upload/{s}", 2.0),
        ("ASGI upload     vs Granian ASGI (info)", "caddysnake/asgi_upload", "granian/asgi_upload/{s}", 1.0),
    ]
    for label, a, b, need in specs:
        for s in ("1proc", "prod"):
            if "{s}" not in b and s == "prod":
                continue
            bk = b.format(s=s)
            for conns in conns_list:
                r = ratio(rps(a, conns), rps(bk, conns))
                out.append({"target": label, "kind": "req/s ratio", "a": a, "b": bk, "setting": s if "{s}" in b else "-",
                            "conns": conns, "value": r, "need": f">= {need:.2f}",
                            "pass": None if r is None else r >= need})
    p99pairs = [("wsgi_hello", "caddy+gunicorn"), ("flask", "caddy+gunicorn"), ("django", "caddy+gunicorn"),
                ("asgi_hello", "caddy+uvicorn"), ("fastapi", "caddy+uvicorn")]
    for app, proxy in p99pairs:
        for s in ("1proc", "prod"):
            a, bk = f"caddysnake/{app}", f"{proxy}/{app}/{s}"
            pa, pb = p99(a, 100), p99(bk, 100)
            r = ratio(pa, pb)
            out.append({"target": f"p99 @100c {APP_LABEL[app]:<14} vs {proxy}", "kind": "p99 ratio (lower is better)",
                        "a": a, "b": bk, "setting": s, "conns": 100, "value": r, "need": "<= 1.00",
                        "a_ms": pa, "b_ms": pb, "pass": None if r is None else r <= 1.0})
    for key in ("caddysnake/wsgi", "caddysnake/asgi"):
        for d in ("upload", "download"):
            g = big.get(key, {}).get(d, {}).get("rss_growth_mib")
            ok = big.get(key, {}).get(d, {}).get("ok_all")
            out.append({"target": f"100 MiB {d:<8} RSS growth {key}", "kind": "MiB", "a": key, "b": None,
                        "setting": "-", "conns": 1, "value": g, "need": "< 64 MiB",
                        "pass": None if g is None else (g < 64 and bool(ok))})
    return out


def print_targets(targets: List[Dict], conns_list: List[int]) -> None:
    say("\n## Targets (caddysnake / baseline, medians of this run)")
    say("   1proc = one Python process per server; prod = recommended production settings for "
        f"{CORES} cores (see the settings column above)")
    rows: Dict = {}
    order: List = []
    for t in targets:
        k = (t["target"], t["need"])
        if k not in rows:
            rows[k] = {}
            order.append(k)
        rows[k][(t["setting"], t["conns"])] = t
    cols = [(s, c) for s in ("1proc", "prod") for c in conns_list]
    hdr = f"{'target':<46} {'need':>9}  " + "  ".join(f"{s + ' @' + str(c) + 'c':>14}" for s, c in cols)
    say(hdr)
    say("-" * len(hdr))
    for k in order:
        cells = []
        for s, c in cols:
            t = rows[k].get((s, c)) or rows[k].get(("-", c)) or (rows[k].get(("-", 1)) if (s, c) == cols[0] else None)
            if t is None:
                cells.append(f"{'':>14}")
                continue
            if t["kind"] == "MiB":
                v = fmt(t["value"], ".1f") + " MiB"
            else:
                v = fmt(t["value"], ".2f") + "x"
            res = "n/a" if t["pass"] is None else ("PASS" if t["pass"] else "FAIL")
            cells.append(f"{v + ' ' + res:>14}")
        say(f"{k[0]:<46} {k[1]:>9}  " + "  ".join(cells))


def print_big(bcfgs: List[Config], big: Dict, args) -> None:
    say(f"\n## Large bodies: {args.big_mib} MiB upload / download, one connection (medians over rounds; "
        "RSS of the server process tree sampled every 20 ms)")
    hdr = (f"{'server':<18} {'settings':<46} {'dir':<8} {'MiB/s':>8} {'base MiB':>9} {'peak MiB':>9} "
           f"{'growth':>8} {'max grw':>8} {'after':>8} {'ok':>5}")
    say(hdr)
    say("-" * len(hdr))
    for cfg in bcfgs:
        b = big.get(cfg.key, {})
        for d in ("upload", "download"):
            x = b.get(d, {})
            say(f"{cfg.key:<18} {cfg.desc[:46]:<46} {d:<8} {fmt(x.get('mib_s'), '.0f'):>8} "
                f"{fmt(x.get('rss_base_mib'), '.1f'):>9} {fmt(x.get('rss_peak_mib'), '.1f'):>9} "
                f"{fmt(x.get('rss_growth_mib'), '.1f'):>8} {fmt(x.get('rss_growth_max_mib'), '.1f'):>8} "
                f"{fmt(x.get('rss_after_mib'), '.1f'):>8} {('yes' if x.get('ok_all') else 'NO'):>5}")
            for e in x.get("errors", []):
                say(f"{'':<18} error: {e}")


def summarize_big(bcfgs: List[Config], braw: Dict[str, List[Dict]]) -> Dict:
    out: Dict = {}
    for cfg in bcfgs:
        recs = braw.get(cfg.key, [])
        o: Dict = {"settings": cfg.desc}
        for d in ("upload", "download"):
            xs = [r.get(d) for r in recs if r.get(d)]
            errs = [x["error"] for x in xs if x.get("error")] + [r["error"] for r in recs if r.get("error")]
            o[d] = {
                "mib_s": median([x.get("mib_s") for x in xs if x.get("ok")]),
                "rss_base_mib": median([x.get("rss_base_mib") for x in xs]),
                "rss_peak_mib": median([x.get("rss_peak_mib") for x in xs]),
                "rss_growth_mib": median([x.get("rss_growth_mib") for x in xs]),
                "rss_growth_max_mib": max((x.get("rss_growth_mib") for x in xs), default=None),
                "rss_after_mib": median([x.get("rss_after_mib") for x in xs]),
                "ok_all": bool(xs) and len(xs) == len(recs) and all(x.get("ok") for x in xs),
                "errors": sorted(set(errs)),
            }
        out[cfg.key] = o
    return out


def scan_logs(logdir: Path) -> Dict[str, Dict]:
    """Count ERROR lines, Go panics/fatal errors and Python exceptions in every server log."""
    out: Dict[str, Dict] = {}
    ts = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d")
    for path in sorted(logdir.glob("*.log")):
        errors = panics = 0
        exc: Dict[str, int] = {}
        in_tb = False
        for line in path.read_text(errors="replace").splitlines():
            if ts.match(line) and "ERROR" in line[:60]:
                errors += 1
            if line.startswith("panic:") or line.startswith("fatal error:") or "SIGSEGV" in line:
                panics += 1
            if line.startswith("Traceback (most recent call last)"):
                in_tb = True
                continue
            if in_tb and line and not line.startswith(" "):
                key = line.strip()[:160]
                exc[key] = exc.get(key, 0) + 1
                in_tb = False
        if errors or panics or exc:
            out[path.stem] = {"error_lines": errors, "panics": panics, "exceptions": exc}
    return out


# ---------------------------------------------------------------------------
# chart
# ---------------------------------------------------------------------------

SERIES = [  # (server, setting, label, color, hatch)
    ("caddysnake", "-", "caddysnake (1 interpreter)", "#2e7d32", ""),
    ("caddy-respond", "-", "Caddy respond (no Python)", "#9e9e9e", ""),
    ("caddy+gunicorn", "1proc", "Caddy→gunicorn, 1 proc", "#1565c0", ""),
    ("caddy+gunicorn", "prod", "Caddy→gunicorn, prod", "#1565c0", "//"),
    ("caddy+uvicorn", "1proc", "Caddy→uvicorn, 1 proc", "#6a1b9a", ""),
    ("caddy+uvicorn", "prod", "Caddy→uvicorn, prod", "#6a1b9a", "//"),
    ("granian", "1proc", "Granian, 1 proc", "#ef6c00", ""),
    ("granian", "prod", "Granian, prod", "#ef6c00", "//"),
    ("uvicorn", "1proc", "uvicorn, 1 proc", "#c2185b", ""),
    ("uvicorn", "prod", "uvicorn, prod", "#c2185b", "//"),
]


def make_chart(cfgs: List[Config], med: Dict, conns_list: List[int], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    apps = ["respond", "wsgi_hello", "flask", "django", "flask_post", "wsgi_upload",
            "asgi_hello", "fastapi", "fastapi_post", "asgi_upload"]
    by = {(c.server, c.setting, c.app): c.key for c in cfgs}
    fig, axes = plt.subplots(len(conns_list), 1, figsize=(20, 6.5 * len(conns_list)), squeeze=False)
    for ax, conns in zip(axes[:, 0], conns_list):
        x = 0.0
        ticks, ticklabels = [], []
        ymax = 0.0
        for app in apps:
            bars = [(s, st, lab, col, h) for (s, st, lab, col, h) in SERIES if (s, st, app) in by]
            if not bars:
                continue
            start = x
            cs_key = by.get(("caddysnake", "-", app))
            cs = med.get(cs_key, {}).get("by_conns", {}).get(str(conns), {}).get("rps") if cs_key else None
            for s, st, lab, col, h in bars:
                v = med[by[(s, st, app)]]["by_conns"][str(conns)]["rps"] or 0
                ymax = max(ymax, v)
                ax.bar(x, v, width=0.8, color=col, hatch=h, edgecolor="black", linewidth=0.5)
                txt = f"{v:,.0f}"
                if s != "caddysnake" and cs and v:
                    txt += f"\ncs ×{cs / v:.2f}"
                ax.text(x, v, txt, ha="center", va="bottom", fontsize=6.5)
                x += 1
            ticks.append((start + x - 1) / 2)
            ticklabels.append(APP_LABEL[app])
            x += 1.0
        ax.set_xticks(ticks)
        ax.set_xticklabels(ticklabels)
        ax.set_ylabel("requests/s (median)")
        ax.set_ylim(0, ymax * 1.18 if ymax else 1)
        ax.set_title(f"{conns} connections — 'cs ×N' = caddysnake req/s ÷ that bar's req/s")
        ax.grid(axis="y", alpha=0.3)
    handles = [Patch(facecolor=col, hatch=h, edgecolor="black", label=lab) for _, _, lab, col, h in SERIES]
    axes[0, 0].legend(handles=handles, ncol=5, fontsize=8, loc="upper left")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------
# machine info
# ---------------------------------------------------------------------------


def machine_info(caddy: Path, args) -> Dict:
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) // 1024
    except OSError:
        pass
    pkgs = {}
    from importlib import metadata
    for name in ("gunicorn", "uvicorn", "httptools", "uvloop", "granian", "flask", "fastapi", "starlette",
                 "django", "matplotlib"):
        try:
            pkgs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pkgs[name] = None
    go = shutil.which("go")
    git = run_text(["git", "-C", str(REPO), "rev-parse", "HEAD"])
    dirty = run_text(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"])
    libpy = re.findall(r"libpython[\d.]+\S*", run_text(["ldd", str(caddy)]))
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "nproc": CORES,
        "cpu_model": cpu,
        "mem_total_mib": mem,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "caddy_libpython": libpy[0] if libpy else None,
        "go": run_text([go, "version"]) if go else None,
        "caddy_built_with_go": run_text([go, "version", str(caddy)]) if go else None,
        "caddy_version": run_text([str(caddy), "version"]),
        "caddy_bin": str(args.caddy),
        "caddy_bin_mtime": _dt.datetime.fromtimestamp(args.caddy.stat().st_mtime, _dt.timezone.utc)
        .isoformat(timespec="seconds"),
        "caddy_bin_sha256": __import__("hashlib").sha256(caddy.read_bytes()).hexdigest(),
        "caddysnake_git": git + (" (dirty work tree)" if dirty and not dirty.startswith("unavailable") else ""),
        "wrk": run_text(["wrk", "-v"]).splitlines()[0] if shutil.which("wrk") else None,
        "packages": pkgs,
    }


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------


def snapshot_binary(src: Path, dst_dir: Path) -> Path:
    """Copy the binary so a concurrent `make build` cannot swap it mid-run."""
    dst = dst_dir / "caddy"
    for attempt in range(12):
        try:
            shutil.copy2(src, dst)
            out = subprocess.run([str(dst), "list-modules"], capture_output=True, text=True, timeout=30)
            if out.returncode == 0 and "http.handlers.python" in out.stdout:
                return dst
            why = out.stderr.strip()[-300:] or "no http.handlers.python module"
        except (OSError, subprocess.SubprocessError) as exc:
            why = str(exc)
        note(f"caddy binary {src} not usable yet ({why}); retrying in 10 s")
        time.sleep(10)
    sys.exit(f"error: {src} is not a working caddy with the caddysnake module")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--caddy", type=Path, default=Path(os.environ.get("CADDY_BIN", REPO / "caddy")))
    ap.add_argument("--python-version", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="1 round, short durations (smoke run, ~4 min)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds (default 3; --quick: 1)")
    ap.add_argument("--duration", type=int, default=None,
                    help="whole seconds per wrk measurement (default 3; quick 2)")
    ap.add_argument("--warmup", type=int, default=None,
                    help="whole seconds of wrk warm-up per server start (default 1; 0 = none)")
    ap.add_argument("--conns", default="100,10", help="connection counts, comma-separated (default 100,10)")
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--big-mib", type=int, default=100, help="large-body size in MiB (default 100)")
    ap.add_argument("--big-rounds", type=int, default=None, help="large-body rounds (default = --rounds)")
    ap.add_argument("--only", default=None, help="regex: run only throughput configs whose key matches")
    ap.add_argument("--no-big", action="store_true", help="skip the large-body measurements")
    ap.add_argument("--no-throughput", action="store_true", help="skip the throughput measurements")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--replot", action="store_true", help="only redraw chart.png from results/results.json")
    args = ap.parse_args()
    if args.replot:
        doc = json.loads((args.results / "results.json").read_text())
        cfgs = [Config(k, v["app"], v["server"], v["setting"], v["settings"], launch_respond)
                for k, v in doc["configs"].items()]
        m, info = doc["method"], doc["machine"]
        title = (f"caddysnake benchmark {info['date']} — {info['nproc']} cores {info['cpu_model']}, "
                 f"Python {info['python']}, {m['rounds']} round(s) x {m['duration_s']:g}s, medians")
        make_chart(cfgs, doc["throughput_medians"], m["conns"], args.results / "chart.png", title)
        say(f"chart: {args.results / 'chart.png'}")
        return 0
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.duration = args.duration or (2 if args.quick else 3)
    args.warmup = args.warmup if args.warmup is not None else 1
    args.big_rounds = args.big_rounds or args.rounds
    args.conns = [int(c) for c in args.conns.split(",") if c.strip()]

    if not shutil.which("wrk"):
        sys.exit("error: wrk not found (bench/run installs it)")
    if not args.caddy.is_file():
        sys.exit(f"error: caddy binary {args.caddy} not found (bench/run builds it)")

    args.results.mkdir(parents=True, exist_ok=True)
    logdir = args.results / "logs"
    if logdir.exists():
        shutil.rmtree(logdir)
    logdir.mkdir()
    workdir = Path(tempfile.mkdtemp(prefix="caddysnake-bench-"))
    try:
        caddy = snapshot_binary(args.caddy, workdir)
        libpy = re.findall(r"libpython(\d+\.\d+)", run_text(["ldd", str(caddy)]))
        mine = "%d.%d" % sys.version_info[:2]
        if libpy and libpy[0] != mine:
            sys.exit(f"error: {args.caddy} embeds Python {libpy[0]} but bench/.venv is Python {mine}; "
                     f"rebuild with `make build PYTHON=...` or set PYTHON to the same version")
        ctx = Ctx(caddy, workdir, logdir)
        return bench(ctx, caddy, args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def bench(ctx: Ctx, caddy: Path, args) -> int:
    info = machine_info(caddy, args)
    cfgs = throughput_configs()
    if args.only:
        cfgs = [c for c in cfgs if re.search(args.only, c.key)]
    if args.no_throughput:
        cfgs = []
    bcfgs = [] if args.no_big else bigbody_configs()
    est = (len(cfgs) * args.rounds * (args.warmup + args.duration * len(args.conns) + 3.0)
           + len(bcfgs) * args.big_rounds * 8)
    say(f"# caddysnake benchmark — {info['date']}")
    say(f"# {info['nproc']} cores ({info['cpu_model']}), {info['mem_total_mib']} MiB RAM, kernel {info['kernel']}")
    say(f"# Python {info['python']} (caddy links {info['caddy_libpython']}); {info['caddy_built_with_go']}")
    say(f"# caddy {info['caddy_version']}; caddysnake {info['caddysnake_git']}")
    say(f"# {info['wrk']}; " + ", ".join(f"{k} {v}" for k, v in info["packages"].items()))
    say(f"# {len(cfgs)} throughput configs x {args.rounds} rounds, wrk -t{args.wrk_threads} "
        f"-c{{{','.join(map(str, args.conns))}}} -d{args.duration:g}s --latency after a {args.warmup:g}s warm-up; "
        f"{len(bcfgs)} large-body configs x {args.big_rounds} rounds; estimated {est / 60:.0f} min")

    raw: Dict[str, List[Dict]] = {c.key: [] for c in cfgs}
    braw: Dict[str, List[Dict]] = {c.key: [] for c in bcfgs}
    out_json = args.results / "results.json"
    t_start = time.monotonic()

    def dump(final: bool = False) -> Dict:
        med = summarize(cfgs, raw, args.conns)
        big = summarize_big(bcfgs, braw)
        doc = {
            "machine": info,
            "method": {"rounds": args.rounds, "duration_s": args.duration, "warmup_s": args.warmup,
                       "conns": args.conns, "wrk_threads": args.wrk_threads, "big_mib": args.big_mib,
                       "big_rounds": args.big_rounds, "quick": args.quick,
                       "proxy_transport": "keepalive_idle_conns_per_host 128",
                       "elapsed_s": round(time.monotonic() - t_start, 1), "complete": final},
            "configs": {c.key: {"app": c.app, "server": c.server, "setting": c.setting, "settings": c.desc}
                        for c in cfgs},
            "throughput_samples": raw,
            "throughput_medians": med,
            "bigbody_configs": {c.key: {"server": c.server, "app": c.app, "settings": c.desc} for c in bcfgs},
            "bigbody_samples": braw,
            "bigbody_medians": big,
        }
        if final:
            doc["targets"] = evaluate_targets(med, big, args.conns)
        out_json.write_text(json.dumps(doc, indent=1, default=str))
        return doc

    for rnd in range(1, args.rounds + 1):
        say(f"\n-- round {rnd}/{args.rounds} --")
        for cfg in cfgs:
            t0 = time.monotonic()
            rec = run_throughput(cfg, ctx, args)
            rec["round"] = rnd
            raw[cfg.key].append(rec)
            w = rec.get("wrk", {})
            parts = [f"{c}c {fmt(w.get(str(c), {}).get('rps'))} req/s p99 {fmt(w.get(str(c), {}).get('p99_ms'), '.1f')}ms"
                     f" err {w.get(str(c), {}).get('errors', '—')}" for c in args.conns]
            status = "" if rec.get("ok") else "  ** " + (rec.get("error") or f"check: {rec.get('check')}")[:300]
            other = max((x.get("cpu", {}).get("other_cores", 0) for x in w.values()), default=0)
            noise = f" | NOISE: other processes used {other:.2f} cores" if other > 0.15 else ""
            say(f"  {cfg.key:<34} {' | '.join(parts)} | rss {fmt(rec.get('rss_peak_mib'), '.0f')} MiB "
                f"({time.monotonic() - t0:.0f}s){status}{noise}")
        dump()

    for rnd in range(1, args.big_rounds + 1):
        if not bcfgs:
            break
        say(f"\n-- large bodies, round {rnd}/{args.big_rounds} --")
        for cfg in bcfgs:
            rec = run_bigbody(cfg, ctx, args)
            rec["round"] = rnd
            braw[cfg.key].append(rec)
            parts = []
            for d in ("upload", "download"):
                x = rec.get(d)
                if x:
                    parts.append(f"{d} {fmt(x.get('mib_s'))} MiB/s +{fmt(x.get('rss_growth_mib'), '.1f')} MiB"
                                 + ("" if x.get("ok") else f" ** {x.get('error')}"))
            status = "" if rec.get("ok") else "  ** " + str(rec.get("error") or "failed")[:300]
            say(f"  {cfg.key:<18} {' | '.join(parts)}{status}")
        dump()

    doc = dump(final=True)
    med, big = doc["throughput_medians"], doc["bigbody_medians"]
    say(f"\n# Settings: 1proc = one Python process per server (caddysnake default threads={CS_THREADS}; "
        f"gunicorn {' '.join(GUNICORN['1proc'])}; uvicorn/granian --workers 1); prod = recommended for "
        f"{CORES} cores (gunicorn {' '.join(GUNICORN['prod'])}; uvicorn --workers {UVICORN_WORKERS['prod']}; "
        f"granian --workers {GRANIAN_WORKERS['prod']}); caddysnake runs one interpreter by design, so it has one row. "
        "Caddy reverse_proxy uses keepalive_idle_conns_per_host 128.")
    if cfgs:
        for conns in args.conns:
            print_table(cfgs, med, conns)
    if bcfgs:
        print_big(bcfgs, big, args)
    targets = doc["targets"]
    print_targets(targets, args.conns)
    bad = [(k, r) for k, rs in raw.items() for r in rs if not r.get("ok")]
    bad += [(k, r) for k, rs in braw.items() for r in rs if not r.get("ok")]
    if bad:
        say("\n## Problems")
        for k, r in bad:
            say(f"  round {r.get('round')} {k}: {r.get('error') or r.get('check') or 'failed'}")
    logscan = scan_logs(ctx.logdir)
    doc["log_scan"] = logscan
    (args.results / "results.json").write_text(json.dumps(doc, indent=1, default=str))
    if logscan:
        say("\n## Server logs: ERROR lines, panics and Python exceptions (results/logs/)")
        for name, x in logscan.items():
            exc = "; ".join(f"{n}x {k}" for k, n in sorted(x["exceptions"].items(), key=lambda kv: -kv[1])[:3])
            say(f"  {name:<40} ERROR lines {x['error_lines']:>5}, panics {x['panics']}" + (f"; {exc}" if exc else ""))
    if cfgs:
        try:
            title = (f"caddysnake benchmark {info['date']} — {info['nproc']} cores {info['cpu_model']}, "
                     f"Python {info['python']}, {args.rounds} round(s) x {args.duration:g}s, medians")
            make_chart(cfgs, med, args.conns, args.results / "chart.png", title)
            say(f"\nchart: {args.results / 'chart.png'}")
        except Exception as exc:  # noqa: BLE001
            say(f"\nchart failed: {exc}")
    say(f"results: {out_json}  (logs: {args.results / 'logs'})")
    say(f"elapsed: {(time.monotonic() - t_start) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
