"""ASGI entry point: Django for HTTP, Channels consumers for WebSockets, one process."""

import os

from django.core.asgi import get_asgi_application

from config.tracing import tracing_setup

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Traces (only with OTEL_EXPORTER_OTLP_ENDPOINT set): before Django builds its middleware chain.
tracing_setup()
# Django must be set up before anything imports models (the websocket routes do).
django_http_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from messaging.routing import websocket_urlpatterns  # noqa: E402

http_app = ASGIStaticFilesHandler(django_http_app) if settings.SERVE_STATIC else django_http_app

application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
