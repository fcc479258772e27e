"""Django (minimal settings: no DB, no middleware, one JsonResponse view) as WSGI."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchdjango.settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
app = application
