"""Writes of the CRM: organizations, members and session choices."""

from django.core.exceptions import PermissionDenied

from crm.selectors import SESSION_ORGANIZATION_KEY, memberships_of_user


def organization_switch(*, user, session, organization_id: int) -> None:
    """Make `organization_id` the one the user works in for this session.

    Raise PermissionDenied when the user is not a member of it.
    """
    if not memberships_of_user(user=user).filter(organization_id=organization_id).exists():
        raise PermissionDenied("You are not a member of that organization.")
    session[SESSION_ORGANIZATION_KEY] = organization_id
