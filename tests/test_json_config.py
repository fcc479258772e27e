"""The handler configured through Caddy's native JSON, and Caddyfile -> JSON adaptation."""

import json

import httpx

from conftest import APPS_DIR, VENV_DIR, free_port, global_options, run_caddy_cmd

SEED_DIR = APPS_DIR / "seed_flask"


def test_json_config_serves(start_caddy, venv_dir):
    cfg = {
        "admin": {"listen": "@ADMIN@"},
        "apps": {"http": {"servers": {"srv0": {
            "listen": ["127.0.0.1:@PORT@"],
            "automatic_https": {"disable": True},
            "routes": [{"handle": [{
                "handler": "python",
                "module_wsgi": "main:app",
                "working_dir": str(SEED_DIR),
                "venv": str(VENV_DIR),
                "threads": 4,
            }]}],
        }}}},
    }
    srv = start_caddy("json", json_config=cfg)
    try:
        r = httpx.get(srv.url("/hello-world"), timeout=10)
        assert r.status_code == 200
        assert r.text == "Hello world!"
        # the live config reads back through the admin API with the same fields
        live = httpx.get(f"http://{srv.admin}/config/apps/http/servers/srv0/routes/0/handle/0",
                         timeout=10).json()
        assert live["handler"] == "python"
        assert live["module_wsgi"] == "main:app"
    finally:
        srv.stop()


def test_caddyfile_adapts_to_documented_json(tmp_path):
    cfg = (global_options(f"127.0.0.1:{free_port()}") + "\nhttp://:8999 {\n\troute {\n\t\tpython {\n"
           f'\t\t\tmodule_wsgi "main:app"\n\t\t\tworking_dir "{SEED_DIR}"\n'
           f'\t\t\tvenv "{VENV_DIR}"\n\t\t\tthreads 8\n\t\t}}\n\t}}\n}}\n')
    path = tmp_path / "Caddyfile"
    path.write_text(cfg)
    res = run_caddy_cmd(["adapt", "--config", str(path), "--adapter", "caddyfile"], tmp_path)
    assert res.returncode == 0, res.stderr
    found = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("handler") == "python":
                found.append(node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(json.loads(res.stdout))
    assert len(found) == 1, res.stdout
    h = found[0]
    assert h["module_wsgi"] == "main:app"
    assert h["working_dir"] == str(SEED_DIR)
    assert h["venv"] == str(VENV_DIR)
    assert h["threads"] == 8
    assert "module_asgi" not in h or not h["module_asgi"]
