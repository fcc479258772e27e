"""A real Django project (admin, auth, sessions, CSRF, ORM on sqlite)."""

import re
import subprocess
import uuid

import httpx
import pytest

from conftest import APPS_DIR, VENV_PYTHON, python_block

DJANGO_DIR = APPS_DIR / "django_project"
ADMIN_USER = "admin"
ADMIN_PASSWORD = "caddysnake-pw-123"


@pytest.fixture(scope="module")
def django_db(tmp_path_factory, venv_dir):
    """Migrate a fresh sqlite database and create a superuser (with the venv's python)."""
    db = tmp_path_factory.mktemp("django-db") / "db.sqlite3"
    env_extra = {"CADDYSNAKE_DJANGO_DB": str(db), "DJANGO_SETTINGS_MODULE": "mysite.settings",
                 "PYTHONDONTWRITEBYTECODE": "1"}
    import os
    env = dict(os.environ, **env_extra)
    env.pop("PYTHONPATH", None)
    for cmd in (["migrate", "--noinput"],
                ["createsuperuser", "--noinput", "--username", ADMIN_USER, "--email", "admin@example.com"]):
        res = subprocess.run([str(VENV_PYTHON), "manage.py"] + cmd, cwd=DJANGO_DIR, capture_output=True,
                             text=True, timeout=120,
                             env=dict(env, DJANGO_SUPERUSER_PASSWORD=ADMIN_PASSWORD))
        assert res.returncode == 0, f"manage.py {cmd} failed:\n{res.stdout}\n{res.stderr}"
    return db


def django_sites(handle_path=None):
    block = python_block("mysite.wsgi:application", DJANGO_DIR, indent="\t\t", threads=4)
    if handle_path:
        return f"http://:@PORT@ {{\n\thandle_path {handle_path}/* {{\n{block}\n\t}}\n}}\n"
    return f"http://:@PORT@ {{\n\troute {{\n{block}\n\t}}\n}}\n"


@pytest.fixture(scope="module")
def django_server(start_caddy, django_db):
    srv = start_caddy("django", sites=django_sites(), env={"CADDYSNAKE_DJANGO_DB": str(django_db)})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def django_prefix_server(start_caddy, django_db):
    srv = start_caddy("django-prefix", sites=django_sites("/dj"),
                      env={"CADDYSNAKE_DJANGO_DB": str(django_db)})
    yield srv
    srv.stop()


def csrf_token_from(html: str) -> str:
    m = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert m, "no csrfmiddlewaretoken in the page"
    return m.group(1)


def test_admin_login_page(django_server):
    r = httpx.get(django_server.url("/admin/login/"), timeout=15)
    assert r.status_code == 200
    assert "csrfmiddlewaretoken" in r.text
    assert 'name="username"' in r.text
    assert 'name="password"' in r.text
    assert "csrftoken" in r.cookies


def test_admin_login_with_csrf_token(django_server):
    with httpx.Client(base_url=django_server.base_url, timeout=15) as c:
        page = c.get("/admin/login/?next=/admin/")
        token = csrf_token_from(page.text)
        r = c.post("/admin/login/?next=/admin/",
                   data={"csrfmiddlewaretoken": token, "username": ADMIN_USER,
                         "password": ADMIN_PASSWORD, "next": "/admin/"})
        assert r.status_code == 302, r.text[:2000]
        assert r.headers["location"] == "/admin/"
        assert "sessionid" in c.cookies
        home = c.get("/admin/")
        assert home.status_code == 200
        assert "Site administration" in home.text
        assert "Notes" in home.text


def test_admin_login_wrong_password(django_server):
    with httpx.Client(base_url=django_server.base_url, timeout=15) as c:
        token = csrf_token_from(c.get("/admin/login/").text)
        r = c.post("/admin/login/", data={"csrfmiddlewaretoken": token, "username": ADMIN_USER,
                                          "password": "wrong", "next": "/admin/"})
        assert r.status_code == 200
        assert "Please enter the correct username and password" in r.text
        assert "sessionid" not in c.cookies


def test_admin_login_without_csrf_token_is_403(django_server):
    with httpx.Client(base_url=django_server.base_url, timeout=15) as c:
        c.get("/admin/login/")  # gets the csrftoken cookie
        r = c.post("/admin/login/", data={"username": ADMIN_USER, "password": ADMIN_PASSWORD})
        assert r.status_code == 403
        assert "CSRF" in r.text


def test_admin_requires_login(django_server):
    r = httpx.get(django_server.url("/admin/"), timeout=15)
    assert r.status_code == 302
    assert r.headers["location"] == "/admin/login/?next=/admin/"


def test_model_create_and_list(django_server):
    text = f"note \u00e9\u2603 {uuid.uuid4().hex[:8]}"
    r = httpx.post(django_server.url("/notes/"), data={"text": text}, timeout=15)
    assert r.status_code == 201, r.text[:2000]
    created = r.json()
    assert created["text"] == text
    listing = httpx.get(django_server.url("/notes/"), timeout=15).json()["notes"]
    assert {"id": created["id"], "text": text} in listing


def test_concurrent_writes(django_server):
    from concurrent.futures import ThreadPoolExecutor
    tag = uuid.uuid4().hex[:8]

    def one(i):
        return httpx.post(django_server.url("/notes/"), data={"text": f"{tag}-{i}"}, timeout=30).status_code

    with ThreadPoolExecutor(4) as ex:
        assert list(ex.map(one, range(12))) == [201] * 12
    listing = httpx.get(django_server.url("/notes/"), timeout=15).json()["notes"]
    assert sorted(n["text"] for n in listing if n["text"].startswith(tag)) == sorted(f"{tag}-{i}" for i in range(12))


def test_unknown_url_404(django_server):
    assert httpx.get(django_server.url("/nope/"), timeout=15).status_code == 404


def test_view_exception_500(django_server):
    ident = uuid.uuid4().hex[:12]
    mark = django_server.log_mark()
    r = httpx.get(django_server.url(f"/boom/?id={ident}"), timeout=15)
    assert r.status_code == 500
    django_server.wait_for_log(f"django-boom-{ident}", "Traceback", since=mark)
    assert httpx.get(django_server.url("/notes/"), timeout=15).status_code == 200


def test_script_name_under_handle_path(django_prefix_server):
    port = django_prefix_server.port
    data = httpx.get(django_prefix_server.url("/dj/info/"), timeout=15).json()
    assert data["script_name"] == "/dj"
    assert data["path_info"] == "/info/"
    assert data["path"] == "/dj/info/"
    assert data["notes_url"] == "/dj/notes/"
    assert data["absolute"] == f"http://127.0.0.1:{port}/dj/notes/"
    r = httpx.get(django_prefix_server.url("/dj/admin/"), timeout=15)
    assert r.status_code == 302
    assert r.headers["location"] == "/dj/admin/login/?next=/dj/admin/"


def test_admin_login_under_prefix(django_prefix_server):
    with httpx.Client(base_url=django_prefix_server.base_url, timeout=15) as c:
        page = c.get("/dj/admin/login/?next=/dj/admin/")
        assert page.status_code == 200
        assert 'action="/dj/admin/login/' in page.text
        token = csrf_token_from(page.text)
        r = c.post("/dj/admin/login/?next=/dj/admin/",
                   data={"csrfmiddlewaretoken": token, "username": ADMIN_USER,
                         "password": ADMIN_PASSWORD, "next": "/dj/admin/"})
        assert r.status_code == 302, r.text[:2000]
        assert r.headers["location"] == "/dj/admin/"
        assert "Site administration" in c.get("/dj/admin/").text


def test_file_response(django_server):
    """FileResponse goes through wsgi.file_wrapper, as under gunicorn: the
    whole file, its length, the attachment header, and HEAD without a body."""
    data = b"django file\n" * 100_000  # notes.views.FILE_DATA
    with httpx.Client(timeout=30) as c:
        r = c.get(django_server.url("/download/"))
        assert r.status_code == 200
        assert r.content == data
        assert r.headers["content-length"] == str(len(data))
        assert r.headers["content-disposition"] == 'attachment; filename="notes.bin"'
        r = c.head(django_server.url("/download/"))
        assert r.status_code == 200 and r.content == b""
        assert c.get(django_server.url("/download/")).content == data
