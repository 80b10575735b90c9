"""Reads of the CRM, always scoped to what the caller may see."""

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from django.conf import settings
from django.db.models import Q, QuerySet

from crm.cache import api_keys_cache_name, cached, cached_under, numbers_cache_name, plan_limits_cache_name
from crm.models import ApiKey, Chat, ChatNote, Contact, Membership, Plan, ProviderServer, QuickReply, WhatsAppNumber
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
    numbers = numbers_active().filter(organization_id=organization_id)
    return {
        "numbers": numbers.count(),
        "connected_numbers": numbers.filter(state=WhatsAppNumber.State.CONNECTED).count(),
        # Only admins act on a silent number (reconnect it); agents are not shown the list.
        "silent_numbers": list(
            numbers.filter(state=WhatsAppNumber.State.CONNECTED, silent_since__isnull=False).order_by("name")
        )
        if membership.is_admin
        else [],
        "open_chats": Chat.objects.filter(organization_id=organization_id, status=Chat.Status.OPEN).count(),
        "members": Membership.objects.filter(organization_id=organization_id).count(),
    }


def numbers_active() -> QuerySet[WhatsAppNumber]:
    """Every number not archived: what lists, placement and health checks work with."""
    return WhatsAppNumber.objects.filter(archived_at__isnull=True)


def number_webhook_url(number: WhatsAppNumber) -> str:
    """Return the URL the number's provider must call: one per number, named by its instance."""
    return f"{settings.PUBLIC_BASE_URL}/webhooks/{number.provider}/{number.instance_name}/"


def number_provider_target(number: WhatsAppNumber) -> ProviderTarget:
    """Return what the number's provider adapter needs to reach it (no database access after)."""
    server = number.server
    if server is not None:
        base_url, api_key, breaker_key = server.base_url, server.api_key, server_breaker_key(server)
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


def server_breaker_key(server: ProviderServer) -> str:
    """The circuit every call to `server` goes through: its numbers' and its health checks'."""
    return f"server-{server.pk}"


def server_provider_target(server: ProviderServer) -> ProviderTarget:
    """Return a target for server-wide calls (the health probe): the server, no instance."""
    return ProviderTarget(
        provider=server.provider,
        instance_name="",
        base_url=server.base_url.rstrip("/"),
        api_key=server.api_key,
        breaker_key=server_breaker_key(server),
    )


def numbers_of_organization(*, organization_id: int) -> QuerySet[WhatsAppNumber]:
    """The organization's WhatsApp numbers, by name, for its number pages and the inbox's filter.

    Archived numbers (removed from their provider by the cleanup beat) are left out; their chats
    and history stay in the inbox.
    """
    return numbers_active().filter(organization_id=organization_id).order_by("name", "id")


def number_chat_count(*, number_id: int) -> int:
    """How many chats deleting the number would delete with it."""
    return Chat.objects.filter(number_id=number_id).count()


# --- the inbox ------------------------------------------------------------------------------------
def members_of_organization(*, organization_id: int) -> QuerySet[Membership]:
    return Membership.objects.filter(organization_id=organization_id).select_related("user").order_by("user__username")


def member_of_organization(*, organization_id: int, membership_id) -> Membership | None:
    """Return the membership when it belongs to the organization; None for anything else."""
    try:
        membership_id = int(membership_id)
    except (TypeError, ValueError):
        return None
    return Membership.objects.filter(pk=membership_id, organization_id=organization_id).first()


def contact_of_organization(*, organization_id: int, contact_id: int) -> Contact | None:
    return Contact.objects.filter(pk=contact_id, organization_id=organization_id).first()


def chat_notes_recent(*, chat: Chat, limit: int) -> list[ChatNote]:
    """The chat's latest private notes, oldest of them first."""
    notes = list(ChatNote.objects.filter(chat=chat).select_related("author").order_by("-created_at", "-id")[:limit])
    notes.reverse()
    return notes


def quick_replies_of_organization(*, organization_id: int) -> QuerySet[QuickReply]:
    return QuickReply.objects.filter(organization_id=organization_id).order_by("shortcut")


def quick_replies_for_composer(*, organization_id: int) -> list[dict]:
    """The quick replies as the composer's "/" menu needs them (rendered into the page as JSON)."""
    return list(quick_replies_of_organization(organization_id=organization_id).values("shortcut", "text"))


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


def number_rows_cached(*, organization_id: int) -> list[dict]:
    """Return `numbers_of_organization` as rows of their public fields, from the cache (the API's list).

    Every service that changes a number invalidates it after commit (crm.cache).
    """

    def load() -> list[dict]:
        return list(numbers_of_organization(organization_id=organization_id).values(*NUMBER_FIELDS))

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
