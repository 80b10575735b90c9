"""Writes of the CRM: organizations, members, session choices and where numbers live."""

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, QuerySet

from crm.models import ProviderServer, WhatsAppNumber
from crm.selectors import SESSION_ORGANIZATION_KEY, memberships_of_user, number_provider_target
from providers.base import CONNECTION_STATES
from providers.registry import SELF_HOSTED_PROVIDERS, adapter_for


class NoServerAvailableError(Exception):
    """No healthy, undrained provider server has room for another number."""


def organization_switch(*, user, session, organization_id: int) -> None:
    """Make `organization_id` the one the user works in for this session.

    Raise PermissionDenied when the user is not a member of it.
    """
    if not memberships_of_user(user=user).filter(organization_id=organization_id).exists():
        raise PermissionDenied("You are not a member of that organization.")
    session[SESSION_ORGANIZATION_KEY] = organization_id


@transaction.atomic
def number_server_place(*, number: WhatsAppNumber) -> ProviderServer | None:
    """Put a self-hosted provider's number on the healthy server with the most spare room.

    Numbers already placed stay where they are (every call for them must reach the same server).
    Hosted providers need no server: return None. Raise NoServerAvailableError when every server of
    the provider is unhealthy, draining or full.
    """
    if number.provider not in SELF_HOSTED_PROVIDERS:
        return None
    if number.server_id:
        return number.server
    # Locking the candidate servers (in id order, so placements never deadlock) makes two
    # placements at once take turns, so neither can put a server over its capacity.
    servers = list(
        ProviderServer.objects.select_for_update()
        .filter(provider=number.provider, is_healthy=True, is_draining=False)
        .order_by("id")
    )
    load = dict(
        WhatsAppNumber.objects.filter(server__in=servers)
        .values("server")
        .annotate(numbers=Count("id"))
        .values_list("server", "numbers")
    )
    with_room = [server for server in servers if load.get(server.pk, 0) < server.capacity]
    if not with_room:
        raise NoServerAvailableError(f"No {number.get_provider_display()} server has room for another number.")
    chosen = min(with_room, key=lambda server: (load.get(server.pk, 0) / server.capacity, server.pk))
    number.server = chosen
    number.save(update_fields=["server"])
    return chosen


def provider_servers_drain(*, servers: QuerySet[ProviderServer], is_draining: bool = True) -> int:
    """Stop (or resume) placing new numbers on `servers`; numbers already on them stay and keep working.

    Return how many servers changed.
    """
    return servers.exclude(is_draining=is_draining).update(is_draining=is_draining)


def number_provision(*, number_id: int) -> WhatsAppNumber:
    """Create the number's instance on its provider if that was never done; return the number.

    Numbers are provisioned on first need (first send, first QR request), not when added, so a
    number nobody uses costs no provider instance. Raise NoServerAvailableError when no server has
    room, ProviderError when the provider refuses.
    """
    with transaction.atomic():
        # The row lock makes concurrent first sends take turns: one provisions, the others find
        # it done. The provider call runs under the lock; it happens once in a number's life.
        number = WhatsAppNumber.objects.select_for_update(of=("self",)).select_related("server").get(pk=number_id)
        if number.state != WhatsAppNumber.State.NOT_PROVISIONED:
            return number
        number_server_place(number=number)
        result = adapter_for(number.provider).provision(number_provider_target(number))
        number.state = result.state if result.state in CONNECTION_STATES else WhatsAppNumber.State.CONNECTING
        number.save(update_fields=["state"])
    return number
