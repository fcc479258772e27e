import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chanproj.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from chanproj import consumers  # noqa: E402

application = ProtocolTypeRouter({
    "http": django_asgi_app,
    "websocket": URLRouter([
        path("ws/echo/", consumers.EchoConsumer.as_asgi()),
        path("ws/sync-echo/", consumers.SyncEchoConsumer.as_asgi()),
        path("ws/room/<str:room>/", consumers.RoomConsumer.as_asgi()),
        path("ws/close/", consumers.CloseConsumer.as_asgi()),
    ]),
})
