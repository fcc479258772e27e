"""Apps with the same module name in different working_dirs stay separate."""

import httpx
import pytest

from conftest import APPS_DIR, python_block

A, B = APPS_DIR / "iso_a", APPS_DIR / "iso_b"


@pytest.fixture(scope="module")
def two_sites(start_caddy):
    sites = ("http://:@PORT0@ {\n" + python_block("main:app", A, venv=False) + "\n}\n"
             "http://:@PORT1@ {\n" + python_block("main:app", B, venv=False) + "\n}\n")
    srv = start_caddy("iso", sites=sites, nports=2)
    yield srv
    srv.stop()


def test_two_sites_same_module_name(two_sites):
    for _ in range(3):
        a = httpx.get(two_sites.url("/", 0), timeout=10)
        b = httpx.get(two_sites.url("/", 1), timeout=10)
        assert (a.status_code, a.text) == (200, "site-a from iso_a")
        assert (b.status_code, b.text) == (200, "site-b, a different module with a longer body from iso_b")


def test_two_handlers_in_one_site(start_caddy):
    sites = ("http://:@PORT@ {\n"
             "\thandle_path /a/* {\n" + python_block("main:app", A, venv=False, indent="\t\t") + "\n\t}\n"
             "\thandle_path /b/* {\n" + python_block("main:app", B, venv=False, indent="\t\t") + "\n\t}\n"
             "\thandle {\n\t\trespond \"fallback\" 200\n\t}\n}\n")
    srv = start_caddy("iso-one-site", sites=sites)
    try:
        assert httpx.get(srv.url("/a/x"), timeout=10).text == "site-a from iso_a"
        assert httpx.get(srv.url("/b/x"), timeout=10).text == "site-b, a different module with a longer body from iso_b"
        assert httpx.get(srv.url("/other"), timeout=10).text == "fallback"
    finally:
        srv.stop()


def test_same_app_in_two_handlers(start_caddy):
    """The same module from the same working_dir behind two routes."""
    sites = ("http://:@PORT@ {\n"
             "\thandle_path /one/* {\n" + python_block("main:app", A, venv=False, indent="\t\t") + "\n\t}\n"
             "\thandle {\n" + python_block("main:app", A, venv=False, indent="\t\t") + "\n\t}\n}\n")
    srv = start_caddy("same-app-twice", sites=sites)
    try:
        assert httpx.get(srv.url("/one/x"), timeout=10).text == "site-a from iso_a"
        assert httpx.get(srv.url("/x"), timeout=10).text == "site-a from iso_a"
    finally:
        srv.stop()


SHARED = '''
import builtins
builtins._cs_shared_loads = getattr(builtins, "_cs_shared_loads", 0) + 1
LOADS = builtins._cs_shared_loads
VERSION = {version!r}
'''
SIBLING = '''
import sys
import shared


def app(environ, start_response):
    body = "{name} %s loads=%d current=%s" % (shared.VERSION, shared.LOADS, shared is sys.modules["shared"])
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
'''


def test_handlers_sharing_a_working_dir_share_its_modules(start_caddy, tmp_path):
    """Two apps of one config from one directory (say a Django project served
    as WSGI and as ASGI) import a module of that directory once, as in one
    gunicorn process: the second must not re-execute it (Django would see its
    models registered twice). A reload still re-imports everything."""
    (tmp_path / "shared.py").write_text(SHARED.format(version="v1"))
    for name in ("a", "b"):
        (tmp_path / f"{name}.py").write_text(SIBLING.format(name=name))
    sites = ("http://:@PORT0@ {\n" + python_block("a:app", tmp_path, venv=False) + "\n}\n"
             "http://:@PORT1@ {\n" + python_block("b:app", tmp_path, venv=False) + "\n}\n")
    srv = start_caddy("siblings", sites=sites, nports=2)
    try:
        assert httpx.get(srv.url("/", 0), timeout=10).text == "a v1 loads=1 current=True"
        assert httpx.get(srv.url("/", 1), timeout=10).text == "b v1 loads=1 current=True"
        (tmp_path / "shared.py").write_text(SHARED.format(version="v2"))
        srv.reload(sites)
        assert httpx.get(srv.url("/", 0), timeout=10).text == "a v2 loads=2 current=True"
        assert httpx.get(srv.url("/", 1), timeout=10).text == "b v2 loads=2 current=True"
    finally:
        srv.stop()


DJANGO_TWO = {
    "proj2_settings.py": 'SECRET_KEY = "x"\nROOT_URLCONF = "proj2_urls"\nALLOWED_HOSTS = ["*"]\n'
                         'INSTALLED_APPS = []\nUSE_TZ = True\n',
    "proj2_urls.py": "from django.http import HttpResponse\nfrom django.urls import path\n"
                     'urlpatterns = [path("", lambda r: HttpResponse("proj2"))]\n',
    "proj2_wsgi.py": 'import os\nos.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj2_settings")\n'
                     "from django.core.wsgi import get_wsgi_application\napplication = get_wsgi_application()\n",
}


def test_second_django_project_is_warned_about(start_caddy, tmp_path, venv_dir):
    """Django's settings are process-wide: a second project would run with the
    first one's settings; the log says so instead of leaving it silent."""
    for name, text in DJANGO_TWO.items():
        (tmp_path / name).write_text(text)
    sites = ("http://:@PORT0@ {\n" + python_block("mysite.wsgi:application", APPS_DIR / "django_project") + "\n}\n"
             "http://:@PORT1@ {\n" + python_block("proj2_wsgi:application", tmp_path) + "\n}\n")
    srv = start_caddy("two-django", sites=sites, nports=2)
    try:
        srv.wait_for_log("one Caddy serves one Django project")
        warning = next(line for line in srv.log().splitlines() if "one Caddy serves one Django project" in line)
        # whichever was provisioned second runs with the other's settings
        assert ("'proj2_wsgi:application'" in warning and "'mysite.settings'" in warning) or \
            ("'mysite.wsgi:application'" in warning and "'proj2_settings'" in warning), warning
    finally:
        srv.stop()
