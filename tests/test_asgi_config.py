"""ASGI configuration errors are rejected by `caddy validate` / `caddy run`."""

import subprocess

import pytest

from conftest import APPS_DIR, ASGI_RAW_DIR, VENV_DIR, free_port, global_options, render, run_caddy_cmd

BROKEN_DIR = APPS_DIR / "asgi_broken"


def write_config(tmp_path, *lines):
    inner = "\troute {\n\t\tpython {\n" + "\n".join("\t\t\t" + L for L in lines) + "\n\t\t}\n\t}\n"
    cfg = global_options(f"127.0.0.1:{free_port()}") + f"\nhttp://:{free_port()} {{\n" + inner + "}\n"
    path = tmp_path / "Caddyfile"
    path.write_text(render(cfg))
    return path


def validate(tmp_path, *lines):
    path = write_config(tmp_path, *lines)
    res = run_caddy_cmd(["validate", "--config", str(path), "--adapter", "caddyfile"], tmp_path)
    return res.returncode, res.stdout + res.stderr


RAW = (f'working_dir "{ASGI_RAW_DIR}"', f'venv "{VENV_DIR}"')


def test_valid_asgi_config(tmp_path):
    rc, out = validate(tmp_path, 'module_asgi "asgiapp:app"', *RAW)
    assert rc == 0, out


def test_valid_asgi_config_all_options(tmp_path):
    rc, out = validate(tmp_path, 'module_asgi "asgiapp:app"', *RAW, "lifespan on", "lifespan_timeout 5s",
                       "loop asyncio")
    assert rc == 0, out


@pytest.mark.parametrize("loop", ["auto", "asyncio", "uvloop"])
def test_loop_values_validate(tmp_path, loop):
    rc, out = validate(tmp_path, 'module_asgi "asgiapp:app"', *RAW, f"loop {loop}")
    assert rc == 0, out


def test_invalid_loop(tmp_path):
    rc, out = validate(tmp_path, 'module_asgi "asgiapp:app"', *RAW, "loop trio")
    assert rc != 0
    assert "loop" in out and "trio" in out


def test_invalid_lifespan_value(tmp_path):
    rc, out = validate(tmp_path, 'module_asgi "asgiapp:app"', *RAW, "lifespan maybe")
    assert rc != 0
    assert "lifespan" in out and "maybe" in out


@pytest.mark.parametrize("value", ["soon", "-5s"])
def test_invalid_lifespan_timeout(tmp_path, value):
    rc, out = validate(tmp_path, 'module_asgi "asgiapp:app"', *RAW, f"lifespan_timeout {value}")
    assert rc != 0
    assert "lifespan_timeout" in out


def test_both_wsgi_and_asgi(tmp_path):
    rc, out = validate(tmp_path, 'module_wsgi "asgiapp:app"', 'module_asgi "asgiapp:app"', *RAW)
    assert rc != 0
    assert "module_wsgi" in out and "module_asgi" in out


def test_asgi_import_error_shows_traceback(tmp_path):
    rc, out = validate(tmp_path, 'module_asgi "raises_on_import:app"', f'working_dir "{BROKEN_DIR}"')
    assert rc != 0
    assert "caddysnake-asgi-import-boom-marker" in out
    assert "Traceback" in out
    assert "_configure" in out


def test_asgi_module_does_not_exist(tmp_path):
    rc, out = validate(tmp_path, 'module_asgi "no_such_asgi_module_xyz:app"', *RAW)
    assert rc != 0
    assert "no_such_asgi_module_xyz" in out


def test_asgi_attribute_does_not_exist(tmp_path):
    rc, out = validate(tmp_path, 'module_asgi "asgiapp:no_such_attr_xyz"', *RAW)
    assert rc != 0
    assert "no_such_attr_xyz" in out


def test_run_fails_on_asgi_import_error(tmp_path):
    path = write_config(tmp_path, 'module_asgi "raises_on_import:app"', f'working_dir "{BROKEN_DIR}"')
    try:
        res = run_caddy_cmd(["run", "--config", str(path), "--adapter", "caddyfile"], tmp_path, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("`caddy run` kept running although the ASGI app cannot be imported")
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "caddysnake-asgi-import-boom-marker" in out
    assert "Traceback" in out


def test_adapt_shows_asgi_fields(tmp_path):
    import json
    path = write_config(tmp_path, 'module_asgi "asgiapp:app"', *RAW, "lifespan on", "lifespan_timeout 7s",
                        "loop asyncio")
    res = run_caddy_cmd(["adapt", "--config", str(path), "--adapter", "caddyfile"], tmp_path)
    assert res.returncode == 0, res.stderr
    cfg = json.loads(res.stdout)
    text = json.dumps(cfg)
    handler = None

    def walk(o):
        nonlocal handler
        if isinstance(o, dict):
            if o.get("handler") == "python":
                handler = o
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    walk(cfg)
    assert handler is not None, text
    assert handler["module_asgi"] == "asgiapp:app"
    assert handler["lifespan"] == "on"
    assert handler["loop"] == "asyncio"
    assert handler["lifespan_timeout"] in (7_000_000_000, "7s")
