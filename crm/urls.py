from django.urls import path

from crm import api_key_views, inbox_views, number_views, views

app_name = "crm"

urlpatterns = [
    path("", views.home, name="home"),
    path("organization/switch/", views.organization_switch, name="organization-switch"),
    # The agent inbox: crm/inbox_views.py
    path("inbox/", inbox_views.inbox, name="inbox"),
    path("inbox/chats/", inbox_views.chat_rows, name="chat-rows"),
    path("inbox/chats/<int:chat_id>/", inbox_views.chat_detail, name="chat-detail"),
    path("inbox/chats/<int:chat_id>/row/", inbox_views.chat_row, name="chat-row"),
    path("inbox/chats/<int:chat_id>/messages/", inbox_views.chat_messages, name="chat-messages"),
    path("inbox/chats/<int:chat_id>/send/", inbox_views.message_send_view, name="message-send"),
    path("inbox/chats/<int:chat_id>/read/", inbox_views.chat_read, name="chat-read"),
    path("inbox/chats/<int:chat_id>/assign/", inbox_views.chat_assign_view, name="chat-assign"),
    path("inbox/chats/<int:chat_id>/status/", inbox_views.chat_status_view, name="chat-status"),
    path("inbox/chats/<int:chat_id>/notes/", inbox_views.chat_note_add_view, name="chat-note-add"),
    path("inbox/messages/<int:message_id>/", inbox_views.message_row, name="message-row"),
    path("inbox/messages/<int:message_id>/retry/", inbox_views.message_retry_view, name="message-retry"),
    path("inbox/contacts/<int:contact_id>/", inbox_views.contact_update_view, name="contact-update"),
    path("inbox/quick-replies/", inbox_views.quick_replies, name="quick-replies"),
    path(
        "inbox/quick-replies/<int:quick_reply_id>/delete/",
        inbox_views.quick_reply_delete_view,
        name="quick-reply-delete",
    ),
    # Number management (organization admins): crm/number_views.py
    path("numbers/", number_views.number_list, name="number-list"),
    path("numbers/add/", number_views.number_add, name="number-add"),
    path("numbers/<int:number_id>/", number_views.number_detail, name="number-detail"),
    path("numbers/<int:number_id>/connect/", number_views.number_connect, name="number-connect"),
    path("numbers/<int:number_id>/logout/", number_views.number_logout, name="number-logout"),
    path("numbers/<int:number_id>/delete/", number_views.number_delete, name="number-delete"),
    path("api-keys/", api_key_views.api_keys, name="api-keys"),
    path("api-keys/<int:api_key_id>/revoke/", api_key_views.api_key_revoke_view, name="api-key-revoke"),
]
