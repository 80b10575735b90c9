"""API key authentication: `Authorization: Bearer <key>`, acting for the key's organization."""

from django.utils import timezone
from rest_framework import authentication, exceptions

from crm.models import ApiKey
from crm.selectors import api_key_valid
from crm.services import api_key_hash, api_key_used


class ApiClient:
    """The caller behind an API key: authenticated, in one organization, and not a person."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = id = None

    def __init__(self, api_key: ApiKey, *, requests_per_minute: int):
        self.api_key = api_key
        self.organization_id = api_key.organization_id
        self.requests_per_minute = requests_per_minute

    def __str__(self) -> str:
        return f"API key {self.api_key.prefix}"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """Authenticate `Authorization: Bearer <key>`; other schemes are left to the next class."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != self.keyword.lower():
            return None
        secret = secret.strip()
        if not secret or " " in secret:
            raise exceptions.AuthenticationFailed("Send the API key as `Authorization: Bearer <key>`.")
        now = timezone.now()
        grant = api_key_valid(key_hash=api_key_hash(secret), now=now)
        if grant is None:
            # One answer for unknown, revoked and expired keys: nothing to learn by probing.
            raise exceptions.AuthenticationFailed("The API key is not valid (unknown, revoked or expired).")
        api_key_used(api_key=grant.api_key, now=now)
        return ApiClient(grant.api_key, requests_per_minute=grant.requests_per_minute), grant.api_key

    def authenticate_header(self, request) -> str:
        return f'{self.keyword} realm="api"'
