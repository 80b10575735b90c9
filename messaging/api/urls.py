"""The integrator API (Django REST framework), versioned under /api/v1/."""

from django.urls import path

from messaging.api import chats, contacts, keys, limits, messages, numbers, webhooks

app_name = "api"

urlpatterns: list = [
    path("auth/rotate-key", keys.KeyRotateApi.as_view(), name="key-rotate"),
    path("limits/", limits.LimitsApi.as_view(), name="limits"),
    # numbers
    path("numbers/", numbers.NumberListApi.as_view(), name="number-list"),
    path("numbers/<int:number_id>/", numbers.NumberDetailApi.as_view(), name="number-detail"),
    path("numbers/<int:number_id>/state/", numbers.NumberStateApi.as_view(), name="number-state"),
    path("numbers/<int:number_id>/qr/", numbers.NumberQrApi.as_view(), name="number-qr"),
    path("numbers/<int:number_id>/connect/", numbers.NumberConnectApi.as_view(), name="number-connect"),
    path("numbers/<int:number_id>/logout/", numbers.NumberLogoutApi.as_view(), name="number-logout"),
    # chats
    path("chats/", chats.ChatListApi.as_view(), name="chat-list"),
    path("chats/<int:chat_id>/", chats.ChatDetailApi.as_view(), name="chat-detail"),
    path("chats/<int:chat_id>/assign/", chats.ChatAssignApi.as_view(), name="chat-assign"),
    path("chats/<int:chat_id>/resolve/", chats.ChatResolveApi.as_view(), name="chat-resolve"),
    path("chats/<int:chat_id>/reopen/", chats.ChatReopenApi.as_view(), name="chat-reopen"),
    path("chats/<int:chat_id>/read/", chats.ChatMarkReadApi.as_view(), name="chat-read"),
    # messages: GET is the chat's history, POST sends (the name predates the history)
    path("chats/<int:chat_id>/messages/", messages.ChatMessagesApi.as_view(), name="message-send"),
    path("messages/<int:message_id>/", messages.MessageDetailApi.as_view(), name="message-detail"),
    path("messages/<int:message_id>/media/", messages.MessageMediaApi.as_view(), name="message-media"),
    path("messages/<int:message_id>/retry/", messages.MessageRetryApi.as_view(), name="message-retry"),
    path("messages/<int:message_id>/cancel/", messages.MessageCancelApi.as_view(), name="message-cancel"),
    # contacts
    path("contacts/", contacts.ContactListApi.as_view(), name="contact-list"),
    path("contacts/<int:contact_id>/", contacts.ContactDetailApi.as_view(), name="contact-detail"),
    # webhooks to integrators
    path("webhooks/", webhooks.SubscriptionListApi.as_view(), name="webhook-list"),
    path("webhooks/<int:subscription_id>/", webhooks.SubscriptionDetailApi.as_view(), name="webhook-detail"),
    path("webhooks/<int:subscription_id>/deliveries/", webhooks.DeliveryListApi.as_view(), name="delivery-list"),
    path("webhook-deliveries/<int:delivery_id>/", webhooks.DeliveryDetailApi.as_view(), name="delivery-detail"),
    path("webhook-deliveries/<int:delivery_id>/replay/", webhooks.DeliveryReplayApi.as_view(), name="delivery-replay"),
]
