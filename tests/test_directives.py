"""Where the `python` directive may appear, what working_dir / venv / root_path do, and how
it sits among Caddy's other handlers (encode, log)."""

import json
import subprocess
import textwrap

import httpx
import pytest

from conftest import APPS_DIR, ASGI_RAW_DIR, RAW_APP_DIR, VENV_DIR, VENV_PYTHON, asgi_block, python_block, wait_until

A, B = APPS_DIR / "iso_a", APPS_DIR / "iso_b"


def env_of(srv, path):
    r = httpx.get(srv.url(path), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["environ"]


def test_directly_in_site_block(start_caddy):
    sites = ("http://:@PORT@ {\n\theader X-Site direct\n"
             + python_block("rawapp:app", RAW_APP_DIR, venv=False) + "\n}\n")
    srv = start_caddy("direct", sites=sites)
    try:
        r = httpx.get(srv.url("/env/direct"), timeout=10)
        assert r.status_code == 200
        assert r.headers["x-site"] == "direct"
        env = r.json()["environ"]
        assert env["PATH_INFO"] == "/env/direct"
        assert env["SCRIPT_NAME"] == ""
    finally:
        srv.stop()


def test_inside_route_with_other_handlers(start_caddy):
    sites = ("http://:@PORT@ {\n\troute {\n\t\trespond /static-thing \"static\" 200\n"
             + python_block("rawapp:app", RAW_APP_DIR, venv=False, indent="\t\t") + "\n\t}\n}\n")
    srv = start_caddy("route", sites=sites)
    try:
        assert httpx.get(srv.url("/static-thing"), timeout=10).text == "static"
        env = env_of(srv, "/env/in-route")
        assert env["PATH_INFO"] == "/env/in-route"
    finally:
        srv.stop()


def test_inside_handle_and_handle_path(start_caddy):
    sites = ("http://:@PORT@ {\n"
             "\thandle_path /stripped/* {\n" + python_block("rawapp:app", RAW_APP_DIR, venv=False, indent="\t\t")
             + "\n\t}\n"
             "\thandle /kept/* {\n" + python_block("main:app", A, venv=False, indent="\t\t") + "\n\t}\n"
             "\thandle {\n\t\trespond \"nothing here\" 404\n\t}\n}\n")
    srv = start_caddy("handle", sites=sites)
    try:
        env = env_of(srv, "/stripped/env/p")
        assert env["SCRIPT_NAME"] == "/stripped"
        assert env["PATH_INFO"] == "/env/p"
        r = httpx.get(srv.url("/kept/anything"), timeout=10)
        assert (r.status_code, r.text) == (200, "site-a from iso_a")
        r = httpx.get(srv.url("/elsewhere"), timeout=10)
        assert (r.status_code, r.text) == (404, "nothing here")
    finally:
        srv.stop()


def test_handle_without_strip_keeps_full_path(start_caddy):
    sites = ("http://:@PORT@ {\n\thandle /h/* {\n"
             + python_block("rawapp:app", RAW_APP_DIR, venv=False, indent="\t\t") + "\n\t}\n}\n")
    srv = start_caddy("handle-nostrip", sites=sites)
    try:
        env = env_of(srv, "/h/x")
        assert env["SCRIPT_NAME"] == ""
        assert env["PATH_INFO"] == "/h/x"
    finally:
        srv.stop()


def test_working_dir_defaults_to_caddy_cwd(start_caddy):
    sites = 'http://:@PORT@ {\n\tpython {\n\t\tmodule_wsgi "main:app"\n\t}\n}\n'
    srv = start_caddy("default-cwd", sites=sites, cwd=A)
    try:
        assert httpx.get(srv.url("/"), timeout=10).text == "site-a from iso_a"
        assert httpx.get(srv.url("/cwd"), timeout=10).text == str(A)
    finally:
        srv.stop()


def test_working_dir_is_the_apps_cwd(start_caddy, tmp_path):
    srv = start_caddy("explicit-cwd", sites="http://:@PORT@ {\n" + python_block("main:app", B, venv=False) + "\n}\n",
                      cwd=tmp_path)
    try:
        assert httpx.get(srv.url("/"), timeout=10).text.startswith("site-b")
        assert httpx.get(srv.url("/cwd"), timeout=10).text == str(B)
    finally:
        srv.stop()


@pytest.fixture
def marker_venv(tmp_path, venv_dir):
    """A fresh venv whose site-packages holds a module and a .pth file."""
    v = tmp_path / "marker-venv"
    subprocess.run([str(VENV_PYTHON), "-m", "venv", "--without-pip", str(v)], check=True, timeout=60)
    site = subprocess.run([str(v / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    (tmp_path / "pth-target").mkdir()
    (tmp_path / "pth-target" / "pth_marker_mod.py").write_text("VALUE = 'from-pth'\n")
    with open(f"{site}/venv_marker_mod.py", "w") as f:
        f.write("VALUE = 'from-venv-site-packages'\n")
    with open(f"{site}/caddysnake_marker.pth", "w") as f:
        f.write(str(tmp_path / "pth-target") + "\n")
    app = tmp_path / "venv-app"
    app.mkdir()
    (app / "main.py").write_text(textwrap.dedent("""
        import venv_marker_mod
        import pth_marker_mod


        def app(environ, start_response):
            body = (venv_marker_mod.VALUE + "|" + pth_marker_mod.VALUE).encode()
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [body]
    """))
    return v, app


def test_venv_site_packages_and_pth(start_caddy, marker_venv):
    v, app = marker_venv
    sites = ("http://:@PORT@ {\n\tpython {\n\t\tmodule_wsgi \"main:app\"\n"
             f"\t\tworking_dir \"{app}\"\n\t\tvenv \"{v}\"\n\t}}\n}}\n")
    srv = start_caddy("venv", sites=sites)
    try:
        assert httpx.get(srv.url("/"), timeout=10).text == "from-venv-site-packages|from-pth"
    finally:
        srv.stop()


def test_head_bodies_reach_no_handler_around_python(start_caddy):
    """An app's body for HEAD is not written at all, so that `encode` does
    not compress it and the access log does not count it as sent (Go would
    drop it only below them), as behind reverse_proxy, whose upstream sends
    no HEAD body: one chunk with a length, a stream, a large tail, a file."""
    sites = ("http://:@PORT@ {\n\tlog {\n\t\toutput file @TMP@/access.log\n\t\tformat json\n\t}\n"
             "\tencode {\n\t\tgzip\n\t\tminimum_length 1\n\t}\n"
             "\thandle_path /w/* {\n" + python_block("rawapp:app", RAW_APP_DIR, venv=False, indent="\t\t")
             + "\n\t}\n\thandle_path /a/* {\n" + asgi_block("asgiapp:app", ASGI_RAW_DIR, indent="\t\t")
             + "\n\t}\n}\n")
    srv = start_caddy("head-log", sites=sites)
    targets = ["/w/cl_exact", "/w/stream?n=3&delay=0", "/w/big?size=40000",
               f"/w/file_wrapper?path={RAW_APP_DIR / 'rawapp.py'}&ctype=text/plain",
               "/a/stream?n=3&delay=0", "/a/set-headers?h=Content-Type:text/html", "/a/bigstream"]
    try:
        with httpx.Client(timeout=10, headers={"Accept-Encoding": "gzip"}) as c:
            for t in targets:
                head = c.head(srv.url(t))
                assert head.status_code == 200, t
                if head.headers.get("content-encoding") == "gzip":
                    assert "content-length" not in head.headers, (t, head.headers)
                assert c.get(srv.url(t)).status_code == 200, t
        log = srv.workdir / "access.log"
        wait_until(lambda: log.exists() and len(log.read_text().splitlines()) >= 2 * len(targets), 10)
        sizes = {}
        for line in log.read_text().splitlines():
            e = json.loads(line)
            sizes[(e["request"]["method"], e["request"]["uri"])] = e["size"]
        for t in targets:
            assert sizes[("HEAD", t)] == 0, (t, sizes)
            assert sizes[("GET", t)] > 0, (t, sizes)
    finally:
        srv.stop()


def _mounted(kind, module, app_dir, root):
    return (f'\t\tpython {{\n\t\t\t{kind} "{module}"\n\t\t\tworking_dir "{app_dir}"\n'
            f'\t\t\tvenv "{VENV_DIR}"\n\t\t\troot_path {root}\n\t\t}}\n')


def test_root_path_option_sets_the_mount_point(start_caddy):
    """root_path, as gunicorn's SCRIPT_NAME and uvicorn's --root-path, replaces
    the guess from a stripped prefix: a rewrite whose result is the tail of
    the path (`rewrite * /` on any URL ending in "/") is no mount point under
    root_path /; a prefix nothing stripped is removed; a stripped path is
    kept whole, even when it starts with the mount point again."""
    w = lambda root: _mounted("module_wsgi", "rawapp:app", RAW_APP_DIR, root)
    a = lambda root: _mounted("module_asgi", "asgiapp:app", ASGI_RAW_DIR, root)
    sites = ("http://:@PORT@ {\n"
             "\thandle /q/* {\n\t\trewrite * /env/q\n" + w("/") + "\t}\n"
             "\thandle /g/* {\n\t\trewrite * /env/g\n" + w("/") + "\t}\n"
             "\thandle /w/* {\n" + w("/w") + "\t}\n"
             "\thandle_path /s/* {\n" + w("/s") + "\t}\n"
             "\thandle /aq/* {\n\t\trewrite * /\n" + a("/") + "\t}\n"
             "\thandle /aw/* {\n" + a("/aw") + "\t}\n"
             "}\n")
    srv = start_caddy("root-path", sites=sites)
    try:
        def environ(path):
            env = env_of(srv, path)
            return env["SCRIPT_NAME"], env["PATH_INFO"]

        def scope(path):
            r = httpx.get(srv.url(path), timeout=10)
            assert r.status_code == 200, r.text
            s = r.json()["scope"]
            return s["root_path"], s["path"]

        # Without the option, /q/env/q would be SCRIPT_NAME /q (the tail guess).
        assert environ("/q/env/q") == ("", "/env/q")
        assert environ("/g/") == ("", "/env/g")
        assert environ("/w/env/x") == ("/w", "/env/x")
        assert environ("/s/env/y") == ("/s", "/env/y")
        assert environ("/s/s/env") == ("/s", "/s/env")
        assert scope("/aq/a/b/") == ("", "/")
        assert scope("/aw/x/y") == ("/aw", "/aw/x/y")
    finally:
        srv.stop()
