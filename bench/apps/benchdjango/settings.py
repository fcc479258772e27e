"""Minimal Django settings for the benchmark: no database, no middleware, no apps."""

SECRET_KEY = "caddysnake-bench-not-secret-" + "x" * 40
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = []
MIDDLEWARE = []
ROOT_URLCONF = "benchdjango.urls"
DATABASES = {}
USE_TZ = True
USE_I18N = False
LOGGING_CONFIG = None
