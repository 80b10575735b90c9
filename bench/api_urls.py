"""Conversa's URLs plus the same history and send views with authentication and throttling swapped out.

`/bench/v1/...` runs the very view classes of `/api/v1/...` with the caller fixed in advance
(no key lookup, no hashing, no last-used check) and no throttle: the difference between the two
is what API-key authentication plus rate limiting cost.
"""

from django.urls import path

from config.urls import urlpatterns as conversa_urlpatterns
from crm.models import ApiKey
from messaging.api.authentication import ApiClient
from messaging.api.messages import ChatMessagesApi

_fixed_key: ApiKey | None = None


class ChatMessagesWithoutAuthApi(ChatMessagesApi):
    throttle_classes = ()

    def perform_authentication(self, request) -> None:
        global _fixed_key
        if _fixed_key is None:
            _fixed_key = ApiKey.objects.select_related("organization").get(name="bench")
        request.user, request.auth = ApiClient(_fixed_key, requests_per_minute=10_000_000), _fixed_key


urlpatterns = [
    path("bench/v1/chats/<int:chat_id>/messages/", ChatMessagesWithoutAuthApi.as_view()),
    *conversa_urlpatterns,
]
