"""Bad configurations are rejected by `caddy validate` / `caddy run` with a useful message."""

import json
import subprocess

import pytest

from conftest import APPS_DIR, RAW_APP_DIR, VENV_DIR, free_port, global_options, render, run_caddy_cmd

BROKEN_DIR = APPS_DIR / "broken"


def validate(tmp_path, python_body: str, *, route=True):
    inner = "\tpython {\n" + python_body + "\n\t}\n"
    if route:
        inner = "\troute {\n" + inner + "\t}\n"
    cfg = global_options(f"127.0.0.1:{free_port()}") + "\nhttp://:" + str(free_port()) + " {\n" + inner + "}\n"
    path = tmp_path / "Caddyfile"
    path.write_text(render(cfg))
    res = run_caddy_cmd(["validate", "--config", str(path), "--adapter", "caddyfile"], tmp_path)
    return res.returncode, res.stdout + res.stderr


def body(*lines):
    return "\n".join("\t\t" + L for L in lines)


def test_valid_config_validates(tmp_path):
    rc, out = validate(tmp_path, body('module_wsgi "rawapp:app"', f'working_dir "{RAW_APP_DIR}"', "threads 2"))
    assert rc == 0, out


def test_valid_config_with_venv_validates(tmp_path):
    rc, out = validate(tmp_path, body('module_wsgi "main:app"', f'working_dir "{APPS_DIR / "seed_flask"}"',
                                      f'venv "{VENV_DIR}"'))
    assert rc == 0, out


def test_unknown_subdirective(tmp_path):
    rc, out = validate(tmp_path, body('module_wsgi "rawapp:app"', f'working_dir "{RAW_APP_DIR}"',
                                      "bogus_subdirective 1"))
    assert rc != 0
    assert "bogus_subdirective" in out


def test_missing_module(tmp_path):
    rc, out = validate(tmp_path, body(f'working_dir "{RAW_APP_DIR}"', "threads 2"))
    assert rc != 0
    assert "module_wsgi" in out


def test_both_wsgi_and_asgi(tmp_path):
    rc, out = validate(tmp_path, body('module_wsgi "rawapp:app"', 'module_asgi "rawapp:app"',
                                      f'working_dir "{RAW_APP_DIR}"'))
    assert rc != 0
    assert "module_wsgi" in out or "module_asgi" in out


def test_module_wsgi_without_argument(tmp_path):
    rc, out = validate(tmp_path, body("module_wsgi", f'working_dir "{RAW_APP_DIR}"'))
    assert rc != 0
    assert "module_wsgi" in out


def test_threads_not_a_number(tmp_path):
    rc, out = validate(tmp_path, body('module_wsgi "rawapp:app"', f'working_dir "{RAW_APP_DIR}"', "threads abc"))
    assert rc != 0
    assert "threads" in out or "abc" in out


def test_import_error_shows_traceback(tmp_path):
    rc, out = validate(tmp_path, body('module_wsgi "raises_on_import:app"', f'working_dir "{BROKEN_DIR}"'))
    assert rc != 0
    assert "caddysnake-import-boom-marker" in out
    assert "Traceback" in out
    assert "RuntimeError" in out


def test_syntax_error_in_app(tmp_path):
    rc, out = validate(tmp_path, body('module_wsgi "syntax_error:app"', f'working_dir "{BROKEN_DIR}"'))
    assert rc != 0
    assert "SyntaxError" in out


def test_module_does_not_exist(tmp_path):
    rc, out = validate(tmp_path, body('module_wsgi "no_such_module_xyz:app"', f'working_dir "{RAW_APP_DIR}"'))
    assert rc != 0
    assert "no_such_module_xyz" in out


def test_attribute_does_not_exist(tmp_path):
    rc, out = validate(tmp_path, body('module_wsgi "rawapp:no_such_attr_xyz"', f'working_dir "{RAW_APP_DIR}"'))
    assert rc != 0
    assert "no_such_attr_xyz" in out


def test_python_directly_in_site_block_validates(tmp_path):
    rc, out = validate(tmp_path, body('module_wsgi "rawapp:app"', f'working_dir "{RAW_APP_DIR}"'), route=False)
    assert rc == 0, out


def test_json_config_without_module(tmp_path):
    cfg = {"apps": {"http": {"servers": {"s": {
        "listen": [f"127.0.0.1:{free_port()}"],
        "routes": [{"handle": [{"handler": "python", "working_dir": str(RAW_APP_DIR)}]}],
    }}}}}
    path = tmp_path / "caddy.json"
    path.write_text(json.dumps(cfg))
    res = run_caddy_cmd(["validate", "--config", str(path)], tmp_path)
    assert res.returncode != 0
    assert "module_wsgi" in res.stdout + res.stderr


def test_run_fails_on_import_error(tmp_path):
    port = free_port()
    cfg = (global_options(f"127.0.0.1:{free_port()}") + f"\nhttp://:{port} {{\n\troute {{\n\t\tpython {{\n"
           f'\t\t\tmodule_wsgi "raises_on_import:app"\n\t\t\tworking_dir "{BROKEN_DIR}"\n\t\t}}\n\t}}\n}}\n')
    path = tmp_path / "Caddyfile"
    path.write_text(cfg)
    try:
        res = run_caddy_cmd(["run", "--config", str(path), "--adapter", "caddyfile"], tmp_path, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("`caddy run` kept running although the app cannot be imported")
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "caddysnake-import-boom-marker" in out
    assert "Traceback" in out


def test_venv_of_another_python_minor_is_refused(tmp_path):
    """The binary embeds one Python minor version; a venv made for another one
    would load incompatible compiled packages, so it is refused by name."""
    other = tmp_path / "oldvenv"
    (other / "lib" / "python3.8" / "site-packages").mkdir(parents=True)
    (other / "pyvenv.cfg").write_text("version = 3.8.18\n")
    rc, out = validate(tmp_path, body('module_wsgi "rawapp:app"', f'working_dir "{RAW_APP_DIR}"',
                                      f'venv "{other}"'))
    assert rc != 0
    assert "python3.8" in out and "recreate" in out, out


def test_venv_that_does_not_exist_is_refused(tmp_path):
    rc, out = validate(tmp_path, body('module_wsgi "rawapp:app"', f'working_dir "{RAW_APP_DIR}"',
                                      f'venv "{tmp_path / "nope"}"'))
    assert rc != 0
    assert "does not exist" in out, out
