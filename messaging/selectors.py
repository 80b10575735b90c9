"""Reads of messaging, scoped to what the caller may see; the consumers use them through
database_sync_to_async, so each is one small query."""

from datetime import timedelta

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from crm.models import Chat, WhatsAppNumber
from crm.selectors import membership_current, memberships_of_user
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
    return WhatsAppNumber.objects.filter(organization_id__in=_organizations_of_member(user))


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
    """Return the message when it has stored media and `user` belongs to its organization."""
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


def messages_sent_on(*, organization_id: int, day) -> int:
    """Outbound messages the organization had accepted on `day` (UTC): its daily quota's count."""
    return (
        DailyUsage.objects.filter(organization_id=organization_id, day=day)
        .values_list("messages_sent", flat=True)
        .first()
        or 0
    )
