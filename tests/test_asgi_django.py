"""The Django project served through django.core.asgi (mysite/asgi.py)."""

import uuid

import httpx
import pytest

from conftest import APPS_DIR, asgi_block
# the same migrated sqlite database + superuser fixture as the WSGI Django tests
from test_django import ADMIN_PASSWORD, ADMIN_USER, csrf_token_from, django_db  # noqa: F401

DJANGO_DIR = APPS_DIR / "django_project"


def sites(handle_path=None):
    block = asgi_block("mysite.asgi:application", DJANGO_DIR, indent="\t\t")
    if handle_path:
        return f"http://:@PORT@ {{\n\thandle_path {handle_path}/* {{\n{block}\n\t}}\n}}\n"
    return f"http://:@PORT@ {{\n\troute {{\n{block}\n\t}}\n}}\n"


@pytest.fixture(scope="module")
def django_asgi_server(start_caddy, django_db):  # noqa: F811
    srv = start_caddy("django-asgi", sites=sites(), env={"CADDYSNAKE_DJANGO_DB": str(django_db)})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def django_asgi_prefix_server(start_caddy, django_db):  # noqa: F811
    srv = start_caddy("django-asgi-prefix", sites=sites("/dj"), env={"CADDYSNAKE_DJANGO_DB": str(django_db)})
    yield srv
    srv.stop()


def test_view_json(django_asgi_server):
    text = f"asgi note \u00e9\u2603 {uuid.uuid4().hex[:8]}"
    r = httpx.post(django_asgi_server.url("/notes/"), data={"text": text}, timeout=15)
    assert r.status_code == 201, r.text[:2000]
    created = r.json()
    assert created["text"] == text
    listing = httpx.get(django_asgi_server.url("/notes/"), timeout=15).json()["notes"]
    assert {"id": created["id"], "text": text} in listing


def test_info_view(django_asgi_server):
    port = django_asgi_server.port
    data = httpx.get(django_asgi_server.url("/info/"), timeout=15).json()
    assert data["path"] == "/info/"
    assert data["path_info"] == "/info/"
    assert data["script_name"] == ""
    assert data["absolute"] == f"http://127.0.0.1:{port}/notes/"


def test_admin_login_page(django_asgi_server):
    r = httpx.get(django_asgi_server.url("/admin/login/"), timeout=15)
    assert r.status_code == 200
    assert "csrfmiddlewaretoken" in r.text
    assert 'name="username"' in r.text and 'name="password"' in r.text
    assert "csrftoken" in r.cookies


def test_admin_login_flow(django_asgi_server):
    with httpx.Client(base_url=django_asgi_server.base_url, timeout=15) as c:
        token = csrf_token_from(c.get("/admin/login/?next=/admin/").text)
        r = c.post("/admin/login/?next=/admin/",
                   data={"csrfmiddlewaretoken": token, "username": ADMIN_USER,
                         "password": ADMIN_PASSWORD, "next": "/admin/"})
        assert r.status_code == 302, r.text[:2000]
        assert r.headers["location"] == "/admin/"
        home = c.get("/admin/")
        assert home.status_code == 200
        assert "Site administration" in home.text


def test_admin_requires_login(django_asgi_server):
    r = httpx.get(django_asgi_server.url("/admin/"), timeout=15)
    assert r.status_code == 302
    assert r.headers["location"] == "/admin/login/?next=/admin/"


def test_unknown_url_404(django_asgi_server):
    assert httpx.get(django_asgi_server.url("/nope/"), timeout=15).status_code == 404


def test_view_exception_500(django_asgi_server):
    ident = uuid.uuid4().hex[:12]
    mark = django_asgi_server.log_mark()
    r = httpx.get(django_asgi_server.url(f"/boom/?id={ident}"), timeout=15)
    assert r.status_code == 500
    django_asgi_server.wait_for_log(f"django-boom-{ident}", "Traceback", since=mark)
    assert httpx.get(django_asgi_server.url("/notes/"), timeout=15).status_code == 200


def test_script_name_under_handle_path(django_asgi_prefix_server):
    port = django_asgi_prefix_server.port
    data = httpx.get(django_asgi_prefix_server.url("/dj/info/"), timeout=15).json()
    assert data["script_name"] == "/dj"
    assert data["path_info"] == "/info/"
    assert data["path"] == "/dj/info/"
    assert data["notes_url"] == "/dj/notes/"
    assert data["absolute"] == f"http://127.0.0.1:{port}/dj/notes/"
    r = httpx.get(django_asgi_prefix_server.url("/dj/admin/"), timeout=15)
    assert r.status_code == 302
    assert r.headers["location"] == "/dj/admin/login/?next=/dj/admin/"
