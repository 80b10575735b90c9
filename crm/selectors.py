"""Reads of the CRM, always scoped to what the caller may see."""

from django.db.models import QuerySet

from crm.models import Chat, Membership, WhatsAppNumber

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
