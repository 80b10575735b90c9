"""Reads of the CRM, always scoped to what the caller may see."""

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from django.conf import settings
from django.db.models import Q, QuerySet

from crm.cache import api_keys_cache_name, cached, cached_under, numbers_cache_name, plan_limits_cache_name
from crm.models import ApiKey, Chat, Contact, Membership, Plan, WhatsAppNumber
from providers.base import ProviderTarget

SESSION_ORGANIZATION_KEY = "organization_id"


def memberships_of_user(*, user) -> QuerySet[Membership]:
    if not user.is_authenticated:
        return Membership.objects.none()
    return (
        Membership.objects.filter(user=user, organization__is_active=True)
        .select_related("organization__plan")
        .order_by("organization__name", "id")
    )


def membership_current(*, user, session) -> Membership | None:
    """Return the membership the user chose for this session, else their first one, else None."""
    memberships = memberships_of_user(user=user)
    chosen_id = session.get(SESSION_ORGANIZATION_KEY)
    if chosen_id is not None:
        chosen = memberships.filter(organization_id=chosen_id).first()
        if chosen:
            return chosen
    return memberships.first()


def organization_overview(*, membership: Membership) -> dict:
    """Return the counts the home page shows for the membership's organization."""
    organization_id = membership.organization_id
    return {
        "numbers": WhatsAppNumber.objects.filter(organization_id=organization_id).count(),
        "connected_numbers": WhatsAppNumber.objects.filter(
            organization_id=organization_id, state=WhatsAppNumber.State.CONNECTED
        ).count(),
        "open_chats": Chat.objects.filter(organization_id=organization_id, status=Chat.Status.OPEN).count(),
        "members": Membership.objects.filter(organization_id=organization_id).count(),
    }


def number_webhook_url(number: WhatsAppNumber) -> str:
    """Return the URL the number's provider must call: one per number, named by its instance."""
    return f"{settings.PUBLIC_BASE_URL}/webhooks/{number.provider}/{number.instance_name}/"


def number_provider_target(number: WhatsAppNumber) -> ProviderTarget:
    """Return what the number's provider adapter needs to reach it (no database access after)."""
    server = number.server
    if server is not None:
        base_url, api_key, breaker_key = server.base_url, server.api_key, f"server-{server.pk}"
    else:
        base_url = number.credentials.get("base_url", "")
        api_key = ""
        # Hosted providers: one circuit per provider API host, since that is what fails together.
        breaker_key = f"{number.provider}:{urlsplit(base_url).netloc or 'default'}"
    return ProviderTarget(
        provider=number.provider,
        instance_name=number.instance_name,
        base_url=base_url.rstrip("/"),
        api_key=api_key,
        credentials=dict(number.credentials),
        webhook_url=number_webhook_url(number),
        webhook_secret=number.webhook_secret,
        breaker_key=breaker_key,
    )


# --- cached reads (crm.cache: invalidated by version after every change) -------------------------
@dataclass(frozen=True)
class PlanLimits:
    max_numbers: int
    messages_per_day: int | None
    api_requests_per_minute: int


def plan_limits(*, plan_id: int) -> PlanLimits:
    """Return the plan's limits from the cache (kept fresh by `crm.services.plan_changed`)."""

    def load() -> PlanLimits:
        values = Plan.objects.values("max_numbers", "messages_per_day", "api_requests_per_minute").get(pk=plan_id)
        return PlanLimits(**values)

    return cached(plan_limits_cache_name(plan_id), load)


NUMBER_FIELDS = ("id", "name", "phone", "provider", "state", "last_seen_at", "created_at")


def numbers_of_organization(*, organization_id: int) -> list[dict]:
    """Return the organization's numbers (their public fields) by name, from the cache.

    Every service that changes a number invalidates it after commit (crm.cache).
    """

    def load() -> list[dict]:
        numbers = WhatsAppNumber.objects.filter(organization_id=organization_id).order_by("name", "id")
        return list(numbers.values(*NUMBER_FIELDS))

    return cached(numbers_cache_name(organization_id), load)


# --- API keys --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ApiKeyGrant:
    """What a valid API key lets a request do: act for its organization, under its plan's limits."""

    api_key: ApiKey  # built from the cache: its organization loads on first access
    plan_id: int
    requests_per_minute: int  # the plan's, kept in the same entry: no second Redis read per request


_API_KEY_FIELDS = ("id", "organization_id", "name", "prefix", "key_hash", "created_by_id", "created_at")


def api_key_valid(*, key_hash: str, now: datetime) -> ApiKeyGrant | None:
    """Return the grant of the key with this hash when it may be used now, from the cache.

    A key is valid unless revoked, past its rotation expiry, or of a suspended organization. The
    entry keeps the expiry and is checked here, so a grace period ends on time without any
    invalidation; revocations, organization and plan changes invalidate it (crm.cache).
    """

    def load() -> dict | None:
        # An unknown key is cached too (as None): a new key's hash is one nobody asked for before.
        return (
            ApiKey.objects.filter(key_hash=key_hash)
            .values(
                *_API_KEY_FIELDS,
                "expires_at",
                "revoked_at",
                "organization__is_active",
                "organization__plan_id",
                "organization__plan__api_requests_per_minute",
            )
            .first()
        )

    row = cached_under(api_keys_cache_name(), f"api-key:{key_hash}", load)
    if (
        row is None
        or row["revoked_at"] is not None
        or not row["organization__is_active"]
        or (row["expires_at"] is not None and row["expires_at"] <= now)
    ):
        return None
    api_key = ApiKey(**{field: row[field] for field in _API_KEY_FIELDS}, expires_at=row["expires_at"])
    api_key._state.adding = False
    return ApiKeyGrant(
        api_key=api_key,
        plan_id=row["organization__plan_id"],
        requests_per_minute=row["organization__plan__api_requests_per_minute"],
    )


def api_keys_of_organization(*, organization_id: int) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(organization_id=organization_id).select_related("created_by")


def contacts_of_organization(*, organization_id: int, search: str = "") -> QuerySet[Contact]:
    """Return the organization's contacts; `search` matches a part of the name or of the phone."""
    contacts = Contact.objects.filter(organization_id=organization_id)
    search = search.strip()
    if search:
        contacts = contacts.filter(Q(name__icontains=search) | Q(phone__contains=search))
    return contacts
