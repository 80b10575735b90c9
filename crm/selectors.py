"""Reads of the CRM, always scoped to what the caller may see."""

from urllib.parse import urlsplit

from django.conf import settings
from django.db.models import QuerySet

from crm.models import Chat, ChatNote, Contact, Membership, ProviderServer, QuickReply, WhatsAppNumber
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
