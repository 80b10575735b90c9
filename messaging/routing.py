"""WebSocket routes. The inbox and conversation consumers join here (see ARCHITECTURE.md)."""

from django.urls import path

from messaging import consumers

websocket_urlpatterns = [
    path("ws/inbox/", consumers.InboxConsumer.as_asgi()),
    path("ws/chats/<int:chat_id>/", consumers.ChatConsumer.as_asgi()),
    path("ws/numbers/<int:number_id>/", consumers.NumberConsumer.as_asgi()),
]
