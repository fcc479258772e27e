"""Minimal Django + Channels settings (no database) for tests/test_ws_frameworks.py."""

SECRET_KEY = "caddysnake-tests-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["channels"]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "chanproj.urls"
DATABASES = {}
USE_TZ = True
ASGI_APPLICATION = "chanproj.asgi.application"
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
