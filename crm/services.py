"""Writes of the CRM: organizations, members, session choices and where numbers live."""

import dataclasses
import hashlib
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from crm.cache import api_keys_cache_name, cache_invalidate, numbers_cache_name, plan_limits_cache_name, redis_client
from crm.models import ApiKey, Organization, ProviderServer, WhatsAppNumber
from crm.selectors import SESSION_ORGANIZATION_KEY, memberships_of_user, number_provider_target, numbers_active
from providers.base import CONNECTION_STATES
from providers.registry import SELF_HOSTED_PROVIDERS, ProviderName, adapter_for


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
        # Archived numbers were removed from their server: they take no room there.
        numbers_active()
        .filter(server__in=servers)
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
        number_changed(organization_id=number.organization_id)
    return number


def number_changed(*, organization_id: int) -> None:
    """Call in every write to a number: the cached numbers list goes stale when it commits."""
    cache_invalidate(numbers_cache_name(organization_id))


def plan_changed(*, plan_id: int) -> None:
    """Call in every write to a plan: its cached limits go stale when it commits."""
    cache_invalidate(plan_limits_cache_name(plan_id))
    cache_invalidate(api_keys_cache_name())  # key grants carry their plan's request rate


class NumberLimitReachedError(Exception):
    """The organization already has as many numbers as its plan allows."""

    def __init__(self, *, limit: int):
        super().__init__(f"Your plan allows {limit} WhatsApp number{'s' if limit != 1 else ''}; remove one first.")
        self.limit = limit


def number_instance_name_generate() -> str:
    # Provider instance names end up in URLs and provider dashboards: short, unique, no tenant data.
    return f"conversa-{secrets.token_hex(6)}"


@transaction.atomic
def number_create(
    *, organization: Organization, name: str, provider: str = "", credentials: dict | None = None
) -> WhatsAppNumber:
    """Add a number to the organization, on the plan's default provider unless another is named.

    The number is not provisioned here: that happens on first need (first send, first connect).
    Raise NumberLimitReachedError at the plan's number limit (exact under concurrency: the
    organization's row lock makes concurrent adds take turns), ValueError for an unknown provider.
    """
    # The organization row first: the same first lock as every event-log writer (one lock order).
    organization = Organization.objects.select_for_update().select_related("plan").get(pk=organization.pk)
    limit = organization.plan.max_numbers
    # Archived numbers keep their history but no longer count against the plan.
    if numbers_active().filter(organization=organization).count() >= limit:
        raise NumberLimitReachedError(limit=limit)
    provider = provider or organization.plan.default_provider
    if provider not in ProviderName.values:
        raise ValueError(f"Unknown provider {provider!r}.")
    number = WhatsAppNumber.objects.create(
        organization=organization,
        name=name.strip(),
        provider=provider,
        instance_name=number_instance_name_generate(),
        credentials=credentials or {},
    )
    number_changed(organization_id=organization.pk)
    return number


def number_delete(*, number: WhatsAppNumber) -> None:
    """Delete the number with its chats and history, and remove its instance from the provider.

    The provider call runs in a Celery task after commit (a web request never waits on a
    provider); the task gets everything it needs, since the row is gone by then.
    """
    from crm.tasks import provider_instance_delete

    provisioned = number.state != WhatsAppNumber.State.NOT_PROVISIONED
    target = number_provider_target(number) if provisioned else None
    with transaction.atomic():
        WhatsAppNumber.objects.filter(pk=number.pk).delete()
        number_changed(organization_id=number.organization_id)
        if target is not None:
            payload = dataclasses.asdict(target)
            transaction.on_commit(lambda: provider_instance_delete.delay(payload))


# --- API keys --------------------------------------------------------------------------------------
API_KEY_PREFIX_CHARS = 8


def api_key_hash(secret: str) -> str:
    """Return the stored form of an API key: its SHA-256, hex (the key itself is never stored)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _api_key_generate() -> tuple[str, str]:
    """Return (prefix, full key): `cnv_<8 visible characters>_<43 secret characters>`."""
    visible = secrets.token_hex(API_KEY_PREFIX_CHARS // 2)
    prefix = f"cnv_{visible}"
    return prefix, f"{prefix}_{secrets.token_urlsafe(32)}"


@transaction.atomic
def api_key_create(*, organization: Organization, name: str, created_by=None) -> tuple[ApiKey, str]:
    """Create an API key for the organization; return it with the key, which is never shown again."""
    prefix, secret = _api_key_generate()
    api_key = ApiKey.objects.create(
        organization=organization,
        name=name.strip() or "API key",
        prefix=prefix,
        key_hash=api_key_hash(secret),
        created_by=created_by,
    )
    return api_key, secret


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Stop the key at once (a revoked key is never valid again)."""
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=api_key.revoked_at)
        api_keys_changed()
    return api_key


def api_keys_changed() -> None:
    """Call in every write that may end a key's validity: cached keys go stale when it commits."""
    cache_invalidate(api_keys_cache_name())


@transaction.atomic
def api_key_rotate(*, api_key: ApiKey, now: datetime | None = None) -> tuple[ApiKey, str]:
    """Issue a replacement key; the old one keeps working for API_KEY_ROTATION_GRACE_SECONDS.

    The grace period lets an integrator deploy the new key without a window of refused calls.
    Raise ApiKeyInvalidError when the key is revoked or already past its expiry.
    """
    now = now or timezone.now()
    api_key = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    if api_key.revoked_at is not None or (api_key.expires_at is not None and api_key.expires_at <= now):
        raise ApiKeyInvalidError("This key is no longer valid.")
    grace_ends = now + timedelta(seconds=settings.API_KEY_ROTATION_GRACE_SECONDS)
    # Rotating a key already in its grace period never extends it.
    if api_key.expires_at is None or api_key.expires_at > grace_ends:
        api_key.expires_at = grace_ends
        api_key.save(update_fields=["expires_at"])
        api_keys_changed()
    return api_key_create(organization=api_key.organization, name=api_key.name, created_by=api_key.created_by)


class ApiKeyInvalidError(Exception):
    """The API key is revoked or expired."""


# Writing last_used_at on every request would turn each read into a write; a minute's precision
# is what people look at it for ("is this key still in use?").
API_KEY_USE_PRECISION_SECONDS = 60


def api_key_used(*, api_key: ApiKey, now: datetime | None = None) -> bool:
    """Record that the key was used now, writing at most once a minute per key; True when it wrote.

    A Redis key that lives a minute decides (an atomic SET NX, so concurrent requests of one key
    elect one writer); the conditional UPDATE keeps the database right even if Redis was flushed.
    """
    gate = f"{settings.CACHE_KEY_PREFIX}:api-key-used:{api_key.pk}"
    if not redis_client().set(gate, 1, nx=True, ex=API_KEY_USE_PRECISION_SECONDS):
        return False
    now = now or timezone.now()
    stale_before = now - timedelta(seconds=API_KEY_USE_PRECISION_SECONDS)
    ApiKey.objects.filter(pk=api_key.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lte=stale_before)
    ).update(last_used_at=now)
    return True
