"""HTTP endpoints of the real-time side: event catch-up, media from our storage, QR, live statistics.

Every error is answered in the one JSON shape `{"error": {"code", "message", "details"}}`.
"""

import time
from dataclasses import asdict

from django.conf import settings
from django.core.cache import cache
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from crm.cache import redis_client
from messaging.api.errors import error_body
from messaging.events import events_after
from messaging.selectors import (
    chat_of_organization,
    message_with_media_for_member,
    messages_per_minute,
    number_of_organization,
)
from messaging.services.inbound import qr_cache_key

CATCH_UP_LIMIT = 500


def error_response(status: int, code: str, message: str, details: dict | None = None) -> JsonResponse:
    return JsonResponse(error_body(code=code, message=message, details=details), status=status)


def _not_signed_in() -> JsonResponse:
    return error_response(401, "not_authenticated", "Sign in first.")


def _not_found() -> JsonResponse:
    return error_response(404, "not_found", "Not found.")


# --- Redis counters (statistics only: the database stays the truth) -----------------------------------
def stats_key(name: str) -> str:
    return f"{settings.CACHE_KEY_PREFIX}:stats:{name}"


def websocket_open_count() -> int:
    """Sockets seen alive within two ping periods: one that died without a goodbye drops out."""
    horizon = time.time() - 2 * settings.WEBSOCKET_PING_SECONDS - 5
    return int(redis_client().zcount(stats_key("websockets"), horizon, "+inf"))


def qr_current(number_id: int) -> dict | None:
    """Return the number's cached QR, counting the cache hit or miss for the statistics."""
    qr = cache.get(qr_cache_key(number_id))
    redis_client().incr(stats_key("cache_hits" if qr is not None else "cache_misses"))
    return qr


# --- endpoints ------------------------------------------------------------------------------------------
@require_GET
def events_catch_up(request: HttpRequest) -> JsonResponse:
    """Return the current organization's events after `after` (and of one `chat`), oldest first."""
    if not request.user.is_authenticated:
        return _not_signed_in()
    membership = getattr(request, "membership", None)
    if membership is None:
        return _not_found()
    try:
        after = int(request.GET.get("after", "0"))
        chat_id = int(request.GET["chat"]) if request.GET.get("chat") else None
    except ValueError:
        return error_response(400, "invalid_parameter", "`after` and `chat` must be integers.")
    if after < 0:
        return error_response(400, "invalid_parameter", "`after` must not be negative.", {"after": after})
    organization_id = membership.organization_id
    if chat_id is not None and chat_of_organization(organization_id=organization_id, chat_id=chat_id) is None:
        return _not_found()
    frames = events_after(organization_id=organization_id, after=after, limit=CATCH_UP_LIMIT, chat_id=chat_id)
    return JsonResponse(
        {
            "events": [asdict(frame) for frame in frames],
            "cursor": frames[-1].cursor if frames else after,
            "has_more": len(frames) == CATCH_UP_LIMIT,
        }
    )


@require_GET
def message_media(request: HttpRequest, message_id: int) -> HttpResponse:
    """Serve a message's media from our storage, to members of its organization only."""
    if not request.user.is_authenticated:
        return _not_signed_in()
    message = message_with_media_for_member(user=request.user, message_id=message_id)
    if message is None:
        return _not_found()
    response = FileResponse(
        message.media.open("rb"),
        content_type=message.media_mime_type or "application/octet-stream",
        as_attachment=message.type == "document",
        filename=message.media_filename or message.media.name.rsplit("/", 1)[-1],
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, max-age=86400"
    return response


@require_GET
def number_qr(request: HttpRequest, number_id: int) -> JsonResponse:
    """Return the number's latest QR while it is fresh (QR_CACHE_SECONDS), for its page."""
    if not request.user.is_authenticated:
        return _not_signed_in()
    membership = getattr(request, "membership", None)
    if (
        membership is None
        or number_of_organization(organization_id=membership.organization_id, number_id=number_id) is None
    ):
        return _not_found()
    qr = qr_current(number_id)
    if qr is None:
        return error_response(404, "qr_expired", "No fresh QR code; connect the number again.")
    return JsonResponse(qr)


@require_GET
def live_statistics(request: HttpRequest) -> JsonResponse:
    """Open sockets, messages per minute and the cache hit ratio, for staff."""
    if not request.user.is_authenticated:
        return _not_signed_in()
    if not request.user.is_staff:
        return error_response(403, "forbidden", "Only staff may see live statistics.")
    client = redis_client()
    hits, misses = (int(value or 0) for value in client.mget(stats_key("cache_hits"), stats_key("cache_misses")))
    per_minute = messages_per_minute()
    return JsonResponse(
        {
            "websocket_connections": websocket_open_count(),
            "messages_in_per_minute": per_minute["in"],
            "messages_out_per_minute": per_minute["out"],
            "cache": {"hits": hits, "misses": misses, "hit_ratio": hits / (hits + misses) if hits + misses else None},
        }
    )
