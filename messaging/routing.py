"""WebSocket routes. The inbox and conversation consumers join here (see ARCHITECTURE.md)."""

websocket_urlpatterns: list = []
