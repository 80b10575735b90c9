"""The integrator API (Django REST framework), versioned under /api/v1/."""

from django.urls import path

from messaging.api import views

app_name = "api"

urlpatterns: list = [
    path("chats/<int:chat_id>/messages/", views.MessageSendApi.as_view(), name="message-send"),
    path("messages/<int:message_id>/retry/", views.MessageRetryApi.as_view(), name="message-retry"),
    path("messages/<int:message_id>/cancel/", views.MessageCancelApi.as_view(), name="message-cancel"),
]
