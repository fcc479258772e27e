"""End-to-end harness for caddysnake.

Starts the real ``caddy`` binary (built with the plugin) on 127.0.0.1 with
free ports, waits for it to answer, exposes helpers to grep its log and to
reload it, and stops it at teardown.  No mocks: every test talks HTTP to a
real Caddy process that embeds CPython.

Environment:
  CADDY_BIN        absolute path of the caddy binary  (default <repo>/caddy)
  CADDYSNAKE_VENV  absolute path of the test venv     (default <repo>/.venv)
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
APPS_DIR = TESTS_DIR / "apps"

CADDY_BIN = Path(os.environ.get("CADDY_BIN") or (REPO_ROOT / "caddy")).resolve()
VENV_DIR = Path(os.environ.get("CADDYSNAKE_VENV") or (REPO_ROOT / ".venv")).resolve()
VENV_PYTHON = VENV_DIR / "bin" / "python"

STARTUP_TIMEOUT = float(os.environ.get("CADDYSNAKE_STARTUP_TIMEOUT", "30"))
STOP_TIMEOUT = 10.0

# Servers that are currently running; their logs are attached to failing
# test reports (see pytest_runtest_makereport below).
_LIVE_SERVERS: List["CaddyServer"] = []


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------


_HANDED_OUT: set = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now and that this session
    has not handed out before.

    The second condition matters: Caddy binds with SO_REUSEPORT, so if the
    kernel hands the same ephemeral port to two calls (say a server's HTTP
    port and its admin port), both listeners bind "successfully" and the
    kernel splits connections between them -- requests then get the admin
    API's 404 now and then instead of failing loudly.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def held_back_at(server, path: str, ident: str) -> int:
    """GET path on a connection whose client reads nothing, and return how
    far the app got (its /firehose-progress?id=ident) once it stopped
    advancing; then check that the response does flow, and hang up."""
    import httpx
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    s.settimeout(10)
    s.connect(("127.0.0.1", server.port))
    try:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: h\r\n\r\n".encode())

        def progress():
            return int(httpx.get(server.url("/firehose-progress"), params={"id": ident}, timeout=10).text)

        wait_until(lambda: progress() > 0, timeout=10)
        last = -1
        while (now := progress()) != last:  # until the app is held up
            last = now
            time.sleep(0.5)
        assert s.recv(1 << 20), "nothing of the response reached the client"
        return now
    finally:
        s.close()


def dechunk(body):
    """The chunks of a chunked HTTP/1.1 body, as framed on the wire."""
    chunks = []
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return chunks
        chunks.append(body[:size])
        body = body[size + 2:]


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.05,
               message: str = "condition") -> object:
    """Poll ``predicate`` until it returns a truthy value or ``timeout`` elapses."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def render(template: str, **values: object) -> str:
    """Replace ``@NAME@`` tokens (Caddyfile braces stay untouched).

    ``@VENV@`` and ``@APPS@`` are always available.
    """
    values.setdefault("VENV", str(VENV_DIR))
    values.setdefault("APPS", str(APPS_DIR))
    out = template
    for key, val in values.items():
        out = out.replace(f"@{key}@", str(val))
    leftover = re.findall(r"@[A-Z0-9_]+@", out)
    assert not leftover, f"unrendered tokens in template: {leftover}"
    return out


def global_options(admin: str, extra: str = "") -> str:
    return (
        "{\n"
        f"\tadmin {admin}\n"
        "\tauto_https off\n"
        "\tpersist_config off\n"
        "\tdefault_bind 127.0.0.1\n"
        "\tgrace_period 5s\n"
        "\tlog {\n\t\toutput stderr\n\t\tformat console\n\t}\n"
        f"{extra}\n"
        "}\n"
    )


def caddy_env(base_dir: Path, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = dict(os.environ)
    # keep Caddy's own state (autosave, certificates) out of $HOME
    env["XDG_CONFIG_HOME"] = str(base_dir / "xdg-config")
    env["XDG_DATA_HOME"] = str(base_dir / "xdg-data")
    env.pop("CADDY_ADMIN", None)
    if extra:
        env.update(extra)
    return env


def require_caddy() -> None:
    if not CADDY_BIN.is_file() or not os.access(CADDY_BIN, os.X_OK):
        pytest.fail(
            f"caddy binary not found at {CADDY_BIN}; run `make build` or set CADDY_BIN",
            pytrace=False,
        )


def require_venv() -> None:
    if not VENV_PYTHON.exists():
        pytest.fail(
            f"test venv not found at {VENV_DIR}; create it with "
            f"`python3 -m venv .venv && .venv/bin/pip install -r tests/requirements.txt` "
            f"or set CADDYSNAKE_VENV",
            pytrace=False,
        )


# --------------------------------------------------------------------------
# raw HTTP/1.x client (exact bytes on the wire)
# --------------------------------------------------------------------------


@dataclass
class RawResponse:
    raw: bytes
    status_line: str = ""
    status: Optional[int] = None
    headers: List[Tuple[str, str]] = field(default_factory=list)
    after_headers: bytes = b""   # bytes on the wire after the blank line
    body: bytes = b""            # de-chunked body
    complete: bool = False       # a full message (chunked terminator / full Content-Length)
    chunked: bool = False

    def header(self, name: str) -> Optional[str]:
        vals = self.header_list(name)
        return vals[0] if vals else None

    def header_list(self, name: str) -> List[str]:
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]


def parse_raw_response(raw: bytes, head_request: bool = False) -> RawResponse:
    resp = RawResponse(raw=raw)
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        return resp
    head, rest = raw[:end].decode("latin-1"), raw[end + 4:]
    lines = head.split("\r\n")
    resp.status_line = lines[0]
    m = re.match(r"HTTP/\d\.\d (\d{3})", lines[0])
    resp.status = int(m.group(1)) if m else None
    for line in lines[1:]:
        k, _, v = line.partition(":")
        resp.headers.append((k.strip(), v.strip()))
    resp.after_headers = rest
    if head_request or resp.status in (204, 304) or (resp.status or 0) < 200:
        resp.complete = True
        return resp
    te = (resp.header("transfer-encoding") or "").lower()
    if "chunked" in te:
        resp.chunked = True
        body, pos = bytearray(), 0
        while True:
            eol = rest.find(b"\r\n", pos)
            if eol < 0:
                break
            try:
                size = int(rest[pos:eol].split(b";")[0], 16)
            except ValueError:
                break
            if size == 0:
                resp.complete = True
                break
            chunk = rest[eol + 2: eol + 2 + size]
            body += chunk
            if len(chunk) < size:
                break
            pos = eol + 2 + size + 2
        resp.body = bytes(body)
    elif resp.header("content-length") is not None:
        n = int(resp.header("content-length"))
        resp.body = rest[:n]
        resp.complete = len(rest) >= n
    else:
        resp.body = rest
        resp.complete = True  # close-delimited
    return resp


def raw_request(port: int, data: bytes, timeout: float = 15.0, head_request: bool = False,
                sock_hook: Optional[Callable[[socket.socket], None]] = None) -> RawResponse:
    """Send ``data`` verbatim to 127.0.0.1:port and read until the server closes.

    Requests should carry ``Connection: close`` so that the read terminates.
    """
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        if sock_hook:
            sock_hook(s)
        s.sendall(data)
        chunks = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"raw request did not finish within {timeout}s; got {b''.join(chunks)[:500]!r}")
            s.settimeout(remaining)
            try:
                c = s.recv(65536)
            except ConnectionResetError:
                break
            if not c:
                break
            chunks.append(c)
    return parse_raw_response(b"".join(chunks), head_request=head_request)


@dataclass
class H2Frame:
    type: str            # DATA, HEADERS, RST_STREAM, GOAWAY, or the frame type's number
    stream: int
    end_stream: bool
    headers: Dict[str, str] = field(default_factory=dict)  # HEADERS: decoded
    data: bytes = b""    # DATA: the payload


def h2_frames(port: int, path: str, *, method: str = "GET", settle: float = 1.0) -> List[H2Frame]:
    """One h2c (prior knowledge) request on a fresh connection, and the
    frames the server sent for it, as they came: for what an HTTP/2 client
    library would hide or refuse (a stream that ends short of its
    Content-Length, a reset, a GOAWAY). Reads until the server has been
    silent for ``settle`` seconds."""
    import h2.config
    import h2.connection
    import hpack

    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", method), (":path", path), (":scheme", "http"),
                          (":authority", f"127.0.0.1:{port}")], end_stream=True)
    buf = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as so:
        so.sendall(conn.data_to_send())
        so.settimeout(settle)
        try:
            while True:
                d = so.recv(65536)
                if not d:
                    break
                buf += d
        except (socket.timeout, ConnectionResetError):
            pass
    names = {0: "DATA", 1: "HEADERS", 3: "RST_STREAM", 7: "GOAWAY"}
    frames, dec, i = [], hpack.Decoder(), 0
    while i + 9 <= len(buf):
        n, ty, flags = int.from_bytes(buf[i:i + 3], "big"), buf[i + 3], buf[i + 4]
        sid = int.from_bytes(buf[i + 5:i + 9], "big") & 0x7FFFFFFF
        payload = buf[i + 9:i + 9 + n]
        f = H2Frame(names.get(ty, str(ty)), sid, ty in (0, 1) and bool(flags & 1))
        if ty == 1:
            f.headers = {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
                         for k, v in dec.decode(payload)}
        elif ty == 0:
            f.data = payload
        frames.append(f)
        i += 9 + n
    return frames


# --------------------------------------------------------------------------
# the Caddy process
# --------------------------------------------------------------------------


class CaddyServer:
    """A running ``caddy run`` process."""

    def __init__(self, workdir: Path, *, sites: Optional[str] = None, json_config: Optional[dict] = None,
                 nports: int = 1, global_extra: str = "", env: Optional[Dict[str, str]] = None,
                 cwd: Optional[Path] = None, values: Optional[Dict[str, object]] = None):
        require_caddy()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.ports = [free_port() for _ in range(nports)]
        self.port = self.ports[0]
        self.admin_port = free_port()
        self.admin = f"127.0.0.1:{self.admin_port}"
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.global_extra = global_extra
        self.values = dict(values or {})
        self.env = caddy_env(workdir, env)
        self.cwd = Path(cwd) if cwd else workdir
        self.log_path = workdir / "caddy.log"
        self.proc: Optional[subprocess.Popen] = None
        self._reloads = 0

        if json_config is not None:
            # string values may carry @PORT@, @ADMIN@, ... tokens
            self.config_path = workdir / "caddy.json"
            self.adapter = None
            self.config_path.write_text(render(json.dumps(json_config, indent=2), **self.token_values()))
        else:
            assert sites is not None
            self.config_path = workdir / "Caddyfile"
            self.adapter = "caddyfile"
            self.config_path.write_text(self.caddyfile(sites))

    # -- config -----------------------------------------------------------
    def token_values(self) -> Dict[str, object]:
        vals: Dict[str, object] = {"PORT": self.port, "ADMIN": self.admin, "TMP": self.workdir}
        for i, p in enumerate(self.ports):
            vals[f"PORT{i}"] = p
        vals.update(self.values)
        return vals

    def caddyfile(self, sites: str) -> str:
        # global_extra may name a port too (a `servers 127.0.0.1:@PORT1@` block)
        return render(global_options(self.admin, self.global_extra) + "\n" + sites, **self.token_values())

    # -- lifecycle --------------------------------------------------------
    def start(self) -> "CaddyServer":
        cmd = [str(CADDY_BIN), "run", "--config", str(self.config_path)]
        if self.adapter:
            cmd += ["--adapter", self.adapter]
        self._logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            cmd, stdout=self._logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=str(self.cwd), env=self.env, start_new_session=True,
        )
        _LIVE_SERVERS.append(self)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        pending = list(self.ports) + [self.admin_port]
        while pending:
            if self.proc.poll() is not None:
                log = self.log()
                self._cleanup()
                raise RuntimeError(
                    f"caddy exited with code {self.proc.returncode} during startup.\n"
                    f"config:\n{self.config_path.read_text()}\nlog:\n{log}")
            if time.monotonic() > deadline:
                log = self.log()
                self.stop()
                raise RuntimeError(
                    f"caddy did not listen on {pending} within {STARTUP_TIMEOUT}s.\n"
                    f"config:\n{self.config_path.read_text()}\nlog:\n{log}")
            port = pending[0]
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    pending.pop(0)
                    continue
            except OSError:
                time.sleep(0.05)
        return self

    def stop(self) -> Optional[int]:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        self._cleanup()
        return self.proc.returncode

    def _cleanup(self) -> None:
        if self in _LIVE_SERVERS:
            _LIVE_SERVERS.remove(self)
        f = getattr(self, "_logf", None)
        if f and not f.closed:
            f.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- log --------------------------------------------------------------
    def log(self) -> str:
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_mark(self) -> int:
        return len(self.log())

    def log_since(self, mark: int) -> str:
        return self.log()[mark:]

    def wait_for_log(self, *needles: str, timeout: float = 5.0, since: int = 0) -> str:
        """Wait until every needle occurs in the log (after ``since``); return that log text."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log()[since:]
            if all(n in text for n in needles):
                return text
            if time.monotonic() > deadline:
                missing = [n for n in needles if n not in text]
                raise AssertionError(
                    f"log does not contain {missing!r} after {timeout}s; log tail:\n{text[-4000:]}")
            time.sleep(0.05)

    # -- HTTP -------------------------------------------------------------
    def url(self, path: str = "/", port_index: int = 0) -> str:
        return f"http://127.0.0.1:{self.ports[port_index]}{path}"

    def raw(self, data: bytes, port_index: int = 0, **kw) -> RawResponse:
        return raw_request(self.ports[port_index], data, **kw)

    # -- reload -----------------------------------------------------------
    def reload(self, sites: str, *, force: bool = True, check: bool = True,
               timeout: float = 60.0) -> subprocess.CompletedProcess:
        """Replace the Caddyfile with ``sites`` (rendered, same ports) and `caddy reload`."""
        assert self.adapter == "caddyfile", "reload helper only supports Caddyfile configs"
        self._reloads += 1
        path = self.workdir / f"Caddyfile.reload{self._reloads}"
        path.write_text(self.caddyfile(sites))
        cmd = [str(CADDY_BIN), "reload", "--config", str(path), "--adapter", "caddyfile",
               "--address", self.admin]
        if force:
            cmd.append("--force")
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                             cwd=str(self.cwd), env=self.env)
        if check and res.returncode != 0:
            raise AssertionError(
                f"caddy reload failed ({res.returncode}):\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}\n"
                f"server log tail:\n{self.log()[-4000:]}")
        if res.returncode == 0:
            self.config_path = path
        return res


@pytest.fixture(scope="session")
def caddy_bin() -> Path:
    require_caddy()
    return CADDY_BIN


@pytest.fixture(scope="session")
def venv_dir() -> Path:
    require_venv()
    return VENV_DIR


@pytest.fixture(scope="session")
def start_caddy(tmp_path_factory):
    """Factory: ``start_caddy(sites=..., nports=1, ...)`` -> running CaddyServer.

    Every server started through the factory is stopped at the end of the
    session at the latest; fixtures with narrower scope stop theirs earlier
    with ``server.stop()``.
    """
    started: List[CaddyServer] = []
    counter = [0]

    def factory(name: str = "caddy", **kw) -> CaddyServer:
        counter[0] += 1
        workdir = tmp_path_factory.mktemp(f"{name}-{counter[0]}-")
        srv = CaddyServer(workdir, **kw)
        started.append(srv)
        return srv.start()

    yield factory
    for srv in started:
        srv.stop()


def run_caddy_cmd(args: List[str], workdir: Path, timeout: float = 60.0,
                  cwd: Optional[Path] = None, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """Run a one-shot caddy sub-command (validate, adapt, run-that-must-fail)."""
    require_caddy()
    return subprocess.run([str(CADDY_BIN)] + args, capture_output=True, text=True, timeout=timeout,
                          cwd=str(cwd or workdir), env=caddy_env(workdir, env), stdin=subprocess.DEVNULL)


def tls_site(tmp_path_factory, name: str, handler_block: str) -> str:
    """An HTTPS site on 127.0.0.1 around handler_block, with a self-signed
    certificate made by openssl (the harness' global options say
    ``auto_https off``, under which ``tls internal`` gets none); skips the
    test when openssl is missing."""
    import shutil
    openssl = shutil.which("openssl")
    if not openssl:
        pytest.skip("openssl CLI not available to make a test certificate")
    d = tmp_path_factory.mktemp(name)
    res = subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                          "-nodes", "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"), "-days", "2",
                          "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    return f"https://127.0.0.1:@PORT@ {{\n\ttls {d / 'cert.pem'} {d / 'key.pem'}\n{handler_block}\n}}\n"


def python_block(module: str, working_dir: object, *, venv: bool = True, threads: Optional[int] = None,
                 indent: str = "\t") -> str:
    """A ``python { ... }`` Caddyfile block."""
    lines = [f"{indent}python {{", f'{indent}\tmodule_wsgi "{module}"', f'{indent}\tworking_dir "{working_dir}"']
    if venv:
        lines.append(f'{indent}\tvenv "{VENV_DIR}"')
    if threads is not None:
        lines.append(f"{indent}\tthreads {threads}")
    lines.append(f"{indent}}}")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# shared servers
# --------------------------------------------------------------------------

RAW_APP_DIR = APPS_DIR / "raw_wsgi"


@pytest.fixture(scope="session")
def raw_state_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("raw-state")


class _Restartable:
    """Holds a session-wide server and restarts it if a test crashed it, so one
    crash does not cascade through every later test (the crashing test itself
    still fails)."""

    def __init__(self, start):
        self._start = start
        self.server: Optional[CaddyServer] = None
        self.crashes: List[str] = []

    def get(self) -> CaddyServer:
        if self.server is not None and not self.server.alive():
            self.crashes.append(self.server.log()[-3000:])
            self.server.stop()
            self.server = None
        if self.server is None:
            self.server = self._start()
        return self.server


@pytest.fixture(scope="session")
def _raw_server_holder(start_caddy, raw_state_dir):
    sites = "http://:@PORT@ {\n" + python_block("rawapp:app", RAW_APP_DIR, venv=False, threads=8) + "\n}\n"
    holder = _Restartable(lambda: start_caddy(
        "raw", sites=sites, global_extra="\tservers {\n\t\tprotocols h1 h2c\n\t}",
        env={"CADDYSNAKE_TEST_STATE": str(raw_state_dir)},
    ))
    yield holder
    if holder.server:
        holder.server.stop()


@pytest.fixture
def raw_server(_raw_server_holder) -> CaddyServer:
    """The raw WSGI app at the site root, HTTP/1.1 + h2c, threads 8 (shared by the session)."""
    return _raw_server_holder.get()


def read_events(server_url: str, ident: str) -> List[str]:
    import httpx
    r = httpx.get(f"{server_url}/events", params={"id": ident}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["events"]


# --------------------------------------------------------------------------
# attach the Caddy log of live servers to failing reports
# --------------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and _LIVE_SERVERS:
        for srv in list(_LIVE_SERVERS):
            tail = srv.log()[-6000:]
            report.sections.append((f"caddy log ({srv.workdir.name}, port {srv.port})", tail))


# --------------------------------------------------------------------------
# ASGI helpers (used by the test_asgi_*.py files)
# --------------------------------------------------------------------------

ASGI_RAW_DIR = APPS_DIR / "asgi_raw"


def asgi_block(module: str, working_dir: object, *, venv: bool = True, lifespan: Optional[str] = None,
               lifespan_timeout: Optional[str] = None, loop: Optional[str] = None,
               indent: str = "\t") -> str:
    """A ``python { module_asgi ... }`` Caddyfile block."""
    lines = [f"{indent}python {{", f'{indent}\tmodule_asgi "{module}"', f'{indent}\tworking_dir "{working_dir}"']
    if venv:
        lines.append(f'{indent}\tvenv "{VENV_DIR}"')
    if lifespan is not None:
        lines.append(f"{indent}\tlifespan {lifespan}")
    if lifespan_timeout is not None:
        lines.append(f"{indent}\tlifespan_timeout {lifespan_timeout}")
    if loop is not None:
        lines.append(f"{indent}\tloop {loop}")
    lines.append(f"{indent}}}")
    return "\n".join(lines)


H2C_GLOBAL = "\tservers {\n\t\tprotocols h1 h2c\n\t}"


def asgi_raw_sites() -> str:
    """The raw ASGI app at the site root and again under ``handle_path /prefix/*``."""
    block = asgi_block("asgiapp:app", ASGI_RAW_DIR, lifespan="on", indent="\t\t")
    return ("http://:@PORT@ {\n"
            "\thandle_path /prefix/* {\n" + block + "\n\t}\n"
            "\thandle {\n" + block + "\n\t}\n"
            "}\n")


@pytest.fixture(scope="session")
def _asgi_server_holder(start_caddy, venv_dir):
    holder = _Restartable(lambda: start_caddy("asgi-raw", sites=asgi_raw_sites(), global_extra=H2C_GLOBAL))
    yield holder
    if holder.server:
        holder.server.stop()


@pytest.fixture
def asgi_server(_asgi_server_holder) -> CaddyServer:
    """The raw ASGI app (lifespan on, loop auto, venv), HTTP/1.1 + h2c, shared by the session.

    ``/prefix/...`` reaches a second handler of the same app under
    ``handle_path /prefix/*``.
    """
    return _asgi_server_holder.get()


def decode_scope_value(obj):
    """Inverse of asgi_raw's ``describe``: {"$b": s} -> bytes, {"$t": [...]} -> tuple."""
    if isinstance(obj, dict):
        if set(obj) == {"$b"}:
            return obj["$b"].encode("latin-1")
        if set(obj) == {"$t"}:
            return tuple(decode_scope_value(x) for x in obj["$t"])
        return {k: decode_scope_value(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode_scope_value(x) for x in obj]
    return obj


def read_first_chunk_and_close(port, path, marker: bytes, timeout=10.0):
    """GET path on a raw socket, wait until the body contains marker (the
    first streamed chunk), check the 200, then drop the connection: a client
    that leaves mid-response."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        buf = b""
        deadline = time.monotonic() + timeout
        while marker not in buf.partition(b"\r\n\r\n")[2]:
            assert time.monotonic() < deadline, f"first chunk not received in {timeout}s: {buf[:300]!r}"
            s.settimeout(max(0.05, deadline - time.monotonic()))
            c = s.recv(4096)
            assert c, f"server closed before the first chunk: {buf[:300]!r}"
            buf += c
        assert buf.startswith(b"HTTP/1.1 200"), buf[:200]
    finally:
        s.close()


def chunked_expect_twice(port, target):
    """Two chunked uploads behind "Expect: 100-continue" on one connection,
    each read whole by the app; the heads of both responses."""
    heads = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.settimeout(5)
        for _ in range(2):
            s.sendall(f"POST {target} HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                      "Expect: 100-continue\r\n\r\n".encode())
            buf = b""
            while b"\r\n\r\n" not in buf:
                c = s.recv(65536)
                assert c, buf
                buf += c
            assert buf.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), buf
            s.sendall(b"5\r\nhello\r\n0\r\n\r\n")
            buf = buf.partition(b"\r\n\r\n")[2]
            while b"\r\n\r\n" not in buf:
                c = s.recv(65536)
                assert c, (heads, buf)
                buf += c
            head, _, rest = buf.partition(b"\r\n\r\n")
            n = int(next(v for k, _, v in (line.partition(b": ") for line in head.split(b"\r\n"))
                         if k.lower() == b"content-length"))
            while len(rest) < n:
                c = s.recv(65536)
                assert c, (heads, head)
                rest += c
            heads.append(head.lower())
    return heads
