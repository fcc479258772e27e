"""Importing apps: one fresh import per configured handler.

Caddy provisions a handler at start-up and again on every config reload, and
each time we import the app afresh so code changes take effect; the previous
app object keeps serving its in-flight requests until Go releases it.

All apps share one interpreter and so one sys.modules. To let two sites serve
``main:app`` from different working directories, every module that was loaded
from an app directory (not from site-packages) is taken out of sys.modules
before an import and put back afterwards unless the new import replaced it.
Modules of the app being (re)loaded are not put back, so a reload re-imports
them, including ones the app imports lazily later. Handlers of one config
that share a working directory share its modules, as they would in one
process of gunicorn: only the app module itself is imported again (a
Django project served as WSGI and ASGI must not register its models twice).
"""

import importlib
import os
import site
import sys

from . import logs

# Every working directory an app was loaded from.
_app_dirs = set()
# The config load (Go numbers them from 1) each working directory was last
# loaded in.
_dir_load = {}


def load_app(spec, working_dir, venv, kind="wsgi", lifespan=False, config_load=0):
    """Import ``"pkg.module:attr"`` and return the app callable, or for kind
    "asgi" a caddysnake_py.asgi.Runner around it.

    working_dir goes first on sys.path; venv ("" for none) adds that virtual
    environment's site-packages. Raises with a traceback on any failure.
    """
    if venv:
        add_venv(venv)
    module_name, _, attr = spec.partition(":")
    wd = os.path.realpath(working_dir or os.getcwd())
    _app_dirs.add(wd)
    if wd in sys.path:
        sys.path.remove(wd)
    sys.path.insert(0, wd)

    # A second handler of the same config load from this directory keeps the
    # modules the first one imported; a new load re-imports them all.
    sibling = config_load != 0 and _dir_load.get(wd) == config_load
    _dir_load[wd] = config_load
    stashed = {
        name: sys.modules.pop(name)
        for name in _app_module_names()
        if not (sibling and name != module_name and _owner(sys.modules[name]) == wd)
    }
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(module_name)
    finally:
        for name, mod in stashed.items():
            if _owner(mod) != wd:
                sys.modules.setdefault(name, mod)
    app = _resolve(module, attr or ("application" if kind == "wsgi" else "app"), spec)
    _warn_foreign_django_settings(app, wd, spec)
    if kind == "asgi":
        from .asgi import Runner

        return Runner(app, lifespan)
    return app


def _warn_foreign_django_settings(app, wd, spec):
    """Django's settings are one per process: a second Django project in this
    Caddy silently runs with the first one's (its DJANGO_SETTINGS_MODULE
    setdefault finds the variable set). Say so instead."""
    conf = sys.modules.get("django.conf")
    if conf is None or not type(app).__module__.startswith("django."):
        return
    settings = conf.settings
    name = getattr(settings, "SETTINGS_MODULE", None) if settings.configured else None
    owner = _owner(sys.modules[name]) if name in sys.modules else None
    if owner is not None and owner != wd:
        logs.warn(
            "caddysnake: the Django app %r in %s runs with the settings %r of %s: Django's settings "
            "are process-wide, so one Caddy serves one Django project" % (spec, wd, name, owner)
        )


def _resolve(module, attr, spec):
    """Follow a dotted attribute path; "factory()" calls a no-argument factory."""
    call = attr.endswith("()")
    obj = module
    for part in (attr[:-2] if call else attr).split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AttributeError(
                "module %r has no attribute %r (app %r)" % (module.__name__, part, spec)
            ) from None
    if call:
        obj = obj()
    if not callable(obj):
        raise TypeError("app %r is not callable (got %s)" % (spec, type(obj).__name__))
    return obj


def _owner(mod):
    """The app directory a module was loaded from, or None (stdlib, packages)."""
    f = getattr(mod, "__file__", None)
    if not isinstance(f, str):
        return None
    best = None
    for d in _app_dirs:
        if f.startswith(d + os.sep) and (best is None or len(d) > len(best)):
            rest = f[len(d) :]
            if "site-packages" not in rest and "dist-packages" not in rest:
                best = d
    return best


def _app_module_names():
    return [name for name, mod in list(sys.modules.items()) if _owner(mod) is not None]


def _site_packages(venv):
    """The venv's site-packages for this interpreter's Python version."""
    ver = "python%d.%d" % sys.version_info[:2]
    lib = os.path.join(venv, "lib")
    if not os.path.isdir(venv):
        raise FileNotFoundError("venv %r does not exist" % venv)
    sp = os.path.join(lib, ver, "site-packages")
    if os.path.isdir(sp):
        return sp
    others = sorted(d for d in os.listdir(lib) if d.startswith("python")) if os.path.isdir(lib) else []
    if others:
        raise RuntimeError(
            "venv %r was made for %s, but this caddy embeds Python %d.%d; recreate it with "
            "python%d.%d -m venv, or build caddy against that Python"
            % (venv, others[0], *sys.version_info[:2], *sys.version_info[:2])
        )
    raise FileNotFoundError("%r is not a virtual environment (no lib/%s/site-packages)" % (venv, ver))


def add_venv(venv):
    """Add a venv's site-packages ahead of the base interpreter's.

    site.addsitedir processes .pth files (editable installs, namespace
    packages); the new entries are then moved before the base site-packages so
    the venv's versions of a package win, as they would under its own python.
    """
    venv = os.path.abspath(venv)
    sp = _site_packages(venv)
    if sp in sys.path:
        return
    _use_venv_executable(venv)
    before = list(sys.path)
    site.addsitedir(sp)
    added = [p for p in sys.path if p not in before]
    base = set(site.getsitepackages() + [site.getusersitepackages()])
    idx = next((i for i, p in enumerate(before) if p in base), len(before))
    sys.path[:] = before[:idx] + added + before[idx:]


_venv_executable = False


def _use_venv_executable(venv):
    """Make sys.executable the venv's python, as it is under a gunicorn or
    uvicorn run from the venv: subprocess.run([sys.executable, ...]) (say,
    manage.py) then finds the venv's packages. One interpreter has one
    sys.executable: the first venv configured gets it."""
    global _venv_executable
    exe = os.path.join(venv, "bin", "python")
    if not _venv_executable and os.access(exe, os.X_OK):
        sys.executable = exe
        _venv_executable = True


def activate_environment_venv():
    """Honour an activated virtualenv (VIRTUAL_ENV), as running gunicorn from it would."""
    venv = os.environ.get("VIRTUAL_ENV")
    if not venv or os.path.realpath(venv) == os.path.realpath(sys.base_prefix):
        return
    try:
        add_venv(venv)
        logs.info("caddysnake: using the active virtualenv %s" % venv)
    except (OSError, RuntimeError) as e:
        logs.warn("caddysnake: ignoring VIRTUAL_ENV: %s" % e)
