"""Who may call the API: someone acting for an organization (an API key, or a signed-in member)."""

from rest_framework import exceptions, permissions

from crm.models import ApiKey, Membership, Organization
from crm.selectors import membership_current


def request_membership(request) -> Membership | None:
    """The signed-in person's current membership (None for API keys and anonymous callers)."""
    if isinstance(request.auth, ApiKey) or not request.user or not request.user.is_authenticated:
        return None
    if not hasattr(request, "_api_membership"):
        # The middleware chose it for session users; HTTP Basic arrives without one.
        membership = getattr(request._request, "membership", None)
        request._api_membership = membership or membership_current(user=request.user, session=request.session)
    return request._api_membership


def request_organization_id(request) -> int | None:
    """The organization the request acts for: the API key's, else the member's current one."""
    if isinstance(request.auth, ApiKey):
        return request.auth.organization_id
    membership = request_membership(request)
    return membership.organization_id if membership else None


def request_organization(request) -> Organization:
    if isinstance(request.auth, ApiKey):
        return request.auth.organization
    return request_membership(request).organization


def request_person(request):
    """The user to credit with a change: the signed-in person, None for an API key."""
    return None if isinstance(request.auth, ApiKey) else request.user


class HasOrganization(permissions.BasePermission):
    """Authenticated, and acting for an organization."""

    def has_permission(self, request, view) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False  # DRF answers 401 (not_authenticated)
        if request_organization_id(request) is None:
            raise exceptions.PermissionDenied("You are not a member of any active organization.")
        return True


class IsOrganizationAdmin(HasOrganization):
    """An API key (it acts for the whole organization), or a signed-in admin of the organization."""

    message = "Only admins of the organization may do this."

    def has_permission(self, request, view) -> bool:
        if not super().has_permission(request, view):
            return False
        if isinstance(request.auth, ApiKey):
            return True
        return request_membership(request).is_admin


class IsApiKey(HasOrganization):
    """Only an API key (rotating a key needs the key)."""

    message = "Only an API key may do this; send it as `Authorization: Bearer <key>`."

    def has_permission(self, request, view) -> bool:
        return super().has_permission(request, view) and isinstance(request.auth, ApiKey)
