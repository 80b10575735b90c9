"""Reads of messaging, scoped to what the caller may see; the consumers use them through
database_sync_to_async, so each is one small query."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from crm.models import Chat, Membership, WhatsAppNumber
from crm.selectors import membership_current, memberships_of_user, numbers_active
from messaging.models import DailyUsage, Message


def number_for_webhook(*, provider: str, instance_name: str) -> WhatsAppNumber | None:
    return (
        WhatsAppNumber.objects.select_related("server").filter(provider=provider, instance_name=instance_name).first()
    )


def organization_id_for_socket(*, user, session) -> int | None:
    """Return the organization the socket's user works in now (their current membership), or None."""
    if user is None or not user.is_authenticated:
        return None
    membership = membership_current(user=user, session=session)
    return membership.organization_id if membership else None


def _organizations_of_member(user) -> QuerySet:
    """The ids of the active organizations `user` belongs to (none for anonymous users), as a subquery."""
    return memberships_of_user(user=user).order_by().values("organization_id")


def chats_of_member(*, user) -> QuerySet[Chat]:
    """Every chat `user` may see: those of the organizations they are a member of."""
    return Chat.objects.filter(organization_id__in=_organizations_of_member(user))


def messages_of_member(*, user) -> QuerySet[Message]:
    return Message.objects.filter(organization_id__in=_organizations_of_member(user))


def numbers_of_member(*, user) -> QuerySet[WhatsAppNumber]:
    """Every unarchived number `user` may see (an archived one keeps its chats, not its rooms)."""
    return numbers_active().filter(organization_id__in=_organizations_of_member(user))


def chat_organization_for_member(*, user, chat_id: int) -> int | None:
    """Return the chat's organization id when `user` is a member of it, else None."""
    return chats_of_member(user=user).filter(pk=chat_id).values_list("organization_id", flat=True).first()


def number_organization_for_member(*, user, number_id: int) -> int | None:
    """Return the number's organization id when `user` is a member of it, else None."""
    return numbers_of_member(user=user).filter(pk=number_id).values_list("organization_id", flat=True).first()


def chat_of_organization(*, organization_id: int, chat_id: int) -> Chat | None:
    return Chat.objects.filter(pk=chat_id, organization_id=organization_id).first()


def number_of_organization(*, organization_id: int, number_id: int) -> WhatsAppNumber | None:
    return WhatsAppNumber.objects.filter(pk=number_id, organization_id=organization_id).first()


def message_with_media_for_member(*, user, message_id: int) -> Message | None:
    """Return the message when it has stored media and `user` belongs to its organization.

    Inbound media is stored once copied; an outbound attachment from its upload on.
    """
    return (
        messages_of_member(user=user)
        .filter(pk=message_id, media_state=Message.MediaState.STORED)
        .exclude(media="")
        .first()
    )


def messages_per_minute(*, minutes: int = 1) -> dict:
    """Messages in and out over the last `minutes`, across organizations (staff statistics)."""
    since = timezone.now() - timedelta(minutes=minutes)
    counts = Message.objects.filter(created_at__gte=since).aggregate(
        inbound=Count("id", filter=Q(direction=Message.Direction.INBOUND)),
        outbound=Count("id", filter=Q(direction=Message.Direction.OUTBOUND)),
    )
    return {"in": counts["inbound"] / minutes, "out": counts["outbound"] / minutes}


# --- the inbox ------------------------------------------------------------------------------------
# Keyset pages: a cursor is the sort key of the last row shown, "<epoch microseconds>_<id>", so the
# next page is one index range scan however deep it is (never OFFSET). Chat lists run on the
# chat_inbox* indexes (status, last_message_at DESC, id DESC), histories on message_chat_history.
CHAT_PAGE_SIZE = 50
MESSAGE_PAGE_SIZE = 50
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class CursorError(ValueError):
    """A paging cursor that is not one we handed out."""


def cursor_of(moment: datetime | None, pk: int) -> str:
    """Return the keyset cursor of a row sorted by (moment, id); no moment sorts as 0."""
    micros = 0 if moment is None else (moment - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}_{pk}"


def cursor_parse(cursor: str) -> tuple[datetime | None, int]:
    """Return (moment, id) of a cursor from `cursor_of`. Raise CursorError when it is not one."""
    try:
        micros_text, pk_text = cursor.split("_")
        micros, pk = int(micros_text), int(pk_text)
    except ValueError as error:
        raise CursorError("Not a paging cursor.") from error
    if micros < 0 or pk < 1:
        raise CursorError("Not a paging cursor.")
    moment = None if micros == 0 else _EPOCH + timedelta(microseconds=micros)
    return moment, pk


@dataclass(frozen=True)
class ChatFilters:
    """What the inbox list shows: one status tab, whose chats, one number, a search."""

    status: str = Chat.Status.OPEN
    view: str = "all"
    number_id: int | None = None
    search: str = ""


def inbox_chats(*, membership: Membership, filters: ChatFilters) -> QuerySet[Chat]:
    """The chats of the member's current organization matching `filters`, newest activity first."""
    chats = Chat.objects.filter(organization_id=membership.organization_id, status=filters.status)
    if filters.view == "mine":
        chats = chats.filter(assignee_id=membership.pk)
    elif filters.view == "unassigned":
        chats = chats.filter(assignee__isnull=True)
    if filters.number_id is not None:
        chats = chats.filter(number_id=filters.number_id)
    if filters.search:
        term = filters.search
        text_matches = Message.objects.filter(chat_id=OuterRef("pk"), text__icontains=term)
        matches = Q(contact__name__icontains=term) | Exists(text_matches)
        # Phones are stored as +<digits>: "(11) 98765-4321" finds +5511987654321.
        digits = "".join(character for character in term if character.isdigit())
        if digits:
            matches |= Q(contact__phone__contains=digits)
        chats = chats.filter(matches)
    # Descending last_message_at puts chats without a message first, as the index stores them.
    return chats.select_related("contact", "number", "assignee__user").order_by("-last_message_at", "-id")


def inbox_chat_page(
    *, membership: Membership, filters: ChatFilters, after: str | None = None
) -> tuple[list[Chat], str | None]:
    """Return one page of the inbox list after the cursor `after`, and the next page's cursor.

    Raise CursorError for a cursor we did not hand out.
    """
    chats = inbox_chats(membership=membership, filters=filters)
    if after:
        moment, pk = cursor_parse(after)
        if moment is None:
            chats = chats.filter(Q(last_message_at__isnull=True, id__lt=pk) | Q(last_message_at__isnull=False))
        else:
            # The redundant `<=` is what the index can range-scan on; the OR alone is only a filter.
            chats = chats.filter(last_message_at__lte=moment).filter(
                Q(last_message_at__lt=moment) | Q(last_message_at=moment, id__lt=pk)
            )
    rows = list(chats[: CHAT_PAGE_SIZE + 1])
    if len(rows) <= CHAT_PAGE_SIZE:
        return rows, None
    rows = rows[:CHAT_PAGE_SIZE]
    return rows, cursor_of(rows[-1].last_message_at, rows[-1].pk)


def inbox_chat(*, membership: Membership, chat_id: int) -> Chat | None:
    """Return the chat, with what its page shows, when it is in the member's current organization."""
    return (
        Chat.objects.filter(pk=chat_id, organization_id=membership.organization_id)
        .select_related("contact", "number", "assignee__user", "organization__plan")
        .first()
    )


def chat_matches(*, membership: Membership, filters: ChatFilters, chat_id: int) -> Chat | None:
    """Return the chat (for its list row) when it belongs in the list `filters` describe, else None."""
    return inbox_chats(membership=membership, filters=filters).filter(pk=chat_id).first()


def chat_history_page(*, chat: Chat, before: str | None = None) -> tuple[list[Message], str | None]:
    """Return the chat's messages before the cursor (default: the newest), oldest first, and the
    cursor of the page before them (None at the beginning of the chat).

    Raise CursorError for a cursor we did not hand out.
    """
    messages = Message.objects.filter(chat_id=chat.pk).select_related("sent_by")
    if before:
        moment, pk = cursor_parse(before)
        if moment is None:
            raise CursorError("Not a paging cursor.")
        # `timestamp <= moment` is redundant, but it is what PostgreSQL turns into an index condition
        # on message_chat_history: without it the OR is only a filter, and a page 900,000 messages
        # deep scanned 900,000 index entries from the newest (bench/inbox.py: 109 ms of SQL, now 0.5 ms).
        messages = messages.filter(timestamp__lte=moment).filter(
            Q(timestamp__lt=moment) | Q(timestamp=moment, id__lt=pk)
        )
    rows = list(messages.order_by("-timestamp", "-id")[: MESSAGE_PAGE_SIZE + 1])
    has_more = len(rows) > MESSAGE_PAGE_SIZE
    rows = rows[:MESSAGE_PAGE_SIZE]
    rows.reverse()
    return rows, (cursor_of(rows[0].timestamp, rows[0].pk) if has_more else None)


def inbox_message(*, membership: Membership, message_id: int) -> Message | None:
    return (
        Message.objects.filter(pk=message_id, organization_id=membership.organization_id)
        .select_related("sent_by")
        .first()
    )


def quota_left(*, organization) -> int | None:
    """Outbound messages the organization may still send today (UTC); None when unlimited."""
    limit = organization.plan.messages_per_day
    if limit is None:
        return None
    day = timezone.now().astimezone(UTC).date()
    used = DailyUsage.objects.filter(organization=organization, day=day).values_list("messages_sent", flat=True)
    return max(0, limit - (used.first() or 0))


def messages_sent_on(*, organization_id: int, day) -> int:
    """Outbound messages the organization had accepted on `day` (UTC): its daily quota's count."""
    return (
        DailyUsage.objects.filter(organization_id=organization_id, day=day)
        .values_list("messages_sent", flat=True)
        .first()
        or 0
    )
