"""Webhook ingest: what providers tell us becomes rows and events, once, whatever they re-send.

`inbound_events_apply` runs inside the webhook view's one transaction. It first takes the
organization row's lock (the lock `event_append` takes anyway, only earlier): every ingest of one
organization then runs one after the other, in one fixed lock order, so two first messages of an
album from a new contact cannot both create the contact, and a batch of several events (Meta
sends batches) cannot deadlock against another batch. The unique constraints still decide: ids,
chats and messages are inserted with ON CONFLICT DO NOTHING / savepoints, so a duplicate is a
no-op, never an error (field notes #1, #3).

Decisions:
- Group messages are skipped (logged). A chat here is one number talking to one person, and a
  contact's identities are people's ids (E.164 phone or `@lid`); filing a group's messages under
  the sender would mix the group into that person's private conversation. `status@broadcast`
  never arrives (the adapters drop it).
- `from_me` messages are our own sends echoed back, or sent from the phone: matched by provider id
  to the outbound row; unmatched ones are stored as outbound `sent` (sent from the phone).
- QR codes live in the cache for QR_CACHE_SECONDS; the event log gets the QR's text (a few hundred
  bytes, enough for a page to draw it) but never the PNG data URI (kilobytes, and stale in 60 s).
"""

import base64
import binascii
import logging
import mimetypes
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from config.log_context import log_fields_bind
from config.metrics import messages_counted
from crm.models import Contact, ContactIdentity, WhatsAppNumber
from crm.phones import IdentityKind, WhatsAppIdentity, phone_normalize, wa_id_parse
from crm.selectors import number_provider_target
from crm.services import number_changed
from messaging.events import event_append, event_log_lock, message_event_data, number_state_event
from messaging.models import Message
from messaging.services.chats import chat_message_touch
from messaging.services.statuses import message_status_report
from providers.base import ConnectionUpdate, InboundMessage, ProviderError, QrUpdate, StatusUpdate, WebhookEvent
from providers.http import provider_request
from providers.meta_cloud import MetaCloudAdapter, media_id_of
from providers.registry import ProviderName

logger = logging.getLogger(__name__)

MEDIA_TYPES = frozenset({"image", "audio", "video", "document", "sticker"})


SWEEP_BATCH = 1000  # media downloads a sweep takes care of at once; the next run takes the rest


def qr_cache_key(number_id: int) -> str:
    return f"number-qr:{number_id}"


def inbound_events_apply(*, number: WhatsAppNumber, events: list[WebhookEvent]) -> list[Message]:
    """Apply a webhook's events for `number`; return the messages it created.

    Must run inside the webhook's transaction (the view opens it) so that the whole webhook is
    stored or nothing is.
    """
    if not events:
        return []
    event_log_lock(number.organization_id)
    created = []
    for event in events:
        if isinstance(event, InboundMessage):
            message = inbound_message_store(number=number, event=event)
            if message is not None:
                created.append(message)
        elif isinstance(event, StatusUpdate):
            message_status_report(
                number_id=number.pk,
                provider_message_id=event.provider_message_id,
                status=event.status,
                error=event.error_message or event.error_code,
            )
        elif isinstance(event, ConnectionUpdate):
            number_connection_update(number=number, event=event)
        elif isinstance(event, QrUpdate):
            number_qr_update(number=number, event=event)
    return created


# --- messages ----------------------------------------------------------------------------------------
def inbound_message_store(*, number: WhatsAppNumber, event: InboundMessage) -> Message | None:
    """Store one message a webhook carried; return it, or None when it is a duplicate or skipped."""
    if event.is_group:
        logger.info("number %s: group message %s skipped", number.pk, event.provider_message_id)
        return None
    if Message.objects.filter(number=number, provider_message_id=event.provider_message_id).exists():
        return None  # a re-delivery, or the echo of a send we already know by its id
    identities = _identities_of(event)
    if not identities:
        logger.warning("number %s: message %s has no usable sender id", number.pk, event.provider_message_id)
        return None
    contact = contact_for_identities(
        organization_id=number.organization_id,
        identities=identities,
        name="" if event.from_me else event.sender_name,
    )
    chat_id = _chat_get_or_create(number=number, contact_id=contact.pk)
    if event.from_me and _send_in_flight(chat_id=chat_id, text=event.text):
        # The outbox worker sent it and has not saved the provider id yet: that row is this message.
        return None
    message = _message_insert(number=number, chat_id=chat_id, event=event)
    if message is None:
        return None
    chat = chat_message_touch(chat_id=chat_id, message=message)
    # One event per message, the chat's new state inside: every listening inbox gets one frame.
    event_append(
        organization_id=number.organization_id,
        type="message.created",
        chat_id=chat_id,
        data=message_event_data(message, chat=chat),
    )
    if message.media_state == Message.MediaState.PENDING:
        transaction.on_commit(lambda: _media_download_enqueue(message.pk))
    transaction.on_commit(lambda: messages_counted(message.direction))
    log_fields_bind(message_id=message.pk)
    return message


def _identities_of(event: InboundMessage) -> list[WhatsAppIdentity]:
    """Every parseable id of the other person, best first, without repeats."""
    raw_ids = [] if event.from_me else list(event.sender_ids)
    raw_ids.append(event.chat_id)  # in a 1:1 chat the chat id is the other person, also for our echoes
    identities: list[WhatsAppIdentity] = []
    for raw in raw_ids:
        try:
            identity = wa_id_parse(raw)
        except ValidationError:
            continue  # a Meta BSUID, a group id: not an id we can match people by
        if identity not in identities:
            identities.append(identity)
    return identities


def contact_for_identities(*, organization_id: int, identities: list[WhatsAppIdentity], name: str = "") -> Contact:
    """Return the organization's contact known by any of `identities`, creating it if none is.

    The ids it lacks are added, so a person's `@lid` and phone end up on one contact (field
    notes #8). Safe against a concurrent first message: the identity insert is ON CONFLICT DO
    NOTHING, and whoever lost the race uses the winner's contact.
    """
    matching = Q()
    for identity in identities:
        matching |= Q(kind=identity.kind, value=identity.value)
    known = list(
        ContactIdentity.objects.filter(matching, organization_id=organization_id)
        .select_related("contact")
        .order_by("id")
    )
    phone = next((identity.value for identity in identities if identity.kind == IdentityKind.PHONE), "")
    if known:
        contact = known[0].contact
        _contact_fill_in(contact, name=name, phone=phone)
    else:
        contact = Contact.objects.create(organization_id=organization_id, name=name[:200], phone=phone)
    have = {(row.kind, row.value) for row in known}
    missing = [identity for identity in identities if (identity.kind, identity.value) not in have]
    if missing:
        ContactIdentity.objects.bulk_create(
            [
                ContactIdentity(
                    organization_id=organization_id, contact=contact, kind=identity.kind, value=identity.value
                )
                for identity in missing
            ],
            ignore_conflicts=True,
        )
    if not known:
        winner = (
            ContactIdentity.objects.filter(matching, organization_id=organization_id)
            .exclude(contact=contact)
            .select_related("contact")
            .order_by("id")
            .first()
        )
        if winner is not None:
            contact.delete()
            return winner.contact
    return contact


def _contact_fill_in(contact: Contact, *, name: str, phone: str) -> None:
    changed = []
    if name and not contact.name:
        contact.name = name[:200]
        changed.append("name")
    if phone and not contact.phone:
        contact.phone = phone
        changed.append("phone")
    if changed:
        contact.save(update_fields=changed)


def _chat_get_or_create(*, number: WhatsAppNumber, contact_id: int) -> int:
    """Return the id of the chat between `number` and the contact; the unique constraint decides.

    Looked up first: nearly every message is in a chat that exists, so that is one statement. Two
    first messages racing both miss, both insert with ON CONFLICT DO NOTHING, and the loser reads
    the winner's row.
    """
    with connection.cursor() as cursor:
        select = "SELECT id FROM crm_chat WHERE number_id = %s AND contact_id = %s"
        cursor.execute(select, [number.pk, contact_id])
        row = cursor.fetchone()
        if row is not None:
            return row[0]
        cursor.execute(
            """
            INSERT INTO crm_chat (organization_id, number_id, contact_id, status, unread_count,
                                  last_message_preview, created_at, updated_at)
            VALUES (%s, %s, %s, 'open', 0, '', %s, %s)
            ON CONFLICT (number_id, contact_id) DO NOTHING
            RETURNING id
            """,
            # The time is a parameter, not now(): the same SQL runs on SQLite in embedded mode.
            [number.organization_id, number.pk, contact_id, timezone.now(), timezone.now()],
        )
        row = cursor.fetchone()
        if row is None:
            cursor.execute(select, [number.pk, contact_id])
            row = cursor.fetchone()
    return row[0]


def _send_in_flight(*, chat_id: int, text: str) -> bool:
    return Message.objects.filter(
        chat_id=chat_id,
        direction=Message.Direction.OUTBOUND,
        status__in=[Message.Status.QUEUED, Message.Status.SENDING],
        provider_message_id__isnull=True,
        text=text,
    ).exists()


def _message_insert(*, number: WhatsAppNumber, chat_id: int, event: InboundMessage) -> Message | None:
    outbound = event.from_me
    message = Message(
        organization_id=number.organization_id,
        number=number,
        chat_id=chat_id,
        direction=Message.Direction.OUTBOUND if outbound else Message.Direction.INBOUND,
        status=Message.Status.SENT if outbound else Message.Status.RECEIVED,
        type=event.type,
        text=event.text,
        provider_message_id=event.provider_message_id,
        timestamp=event.timestamp,
        media_mime_type=event.media_mime_type[:100],
        media_filename=event.media_filename[:255],
        extra=_extra_of(event),
    )
    media_file = _media_prepare(number=number, message=message, event=event)
    try:
        # A savepoint: a concurrent twin that slipped past the exists() check loses here, quietly.
        with transaction.atomic():
            if media_file is not None:
                message.media.save(media_file.name, media_file, save=False)
            message.save(force_insert=True)
    except IntegrityError:
        if Message.objects.filter(number=number, provider_message_id=event.provider_message_id).exists():
            return None
        raise
    return message


def _extra_of(event: InboundMessage) -> dict:
    extra = {}
    if event.latitude is not None and event.longitude is not None:
        extra.update(latitude=event.latitude, longitude=event.longitude)
    if event.quoted_message_id:
        extra["quoted_message_id"] = event.quoted_message_id
    return extra


def _media_prepare(*, number: WhatsAppNumber, message: Message, event: InboundMessage) -> ContentFile | None:
    """Set the message's media state; return the file when the webhook carried it already."""
    if event.type not in MEDIA_TYPES:
        return None
    if event.media_base64:
        try:
            content = base64.b64decode(event.media_base64, validate=False)
        except (binascii.Error, ValueError):
            content = b""
        if content:
            message.media_state = Message.MediaState.STORED
            return ContentFile(content, name=media_filename(message))
    source = media_id_of(event) if number.provider == ProviderName.META_CLOUD else event.media_url
    if source:
        message.media_state = Message.MediaState.PENDING
        message.media_source = source
    else:
        message.media_state = Message.MediaState.FAILED
        message.media_error = "The provider sent no media and no way to download it."
    return None


def media_filename(message: Message) -> str:
    """A safe storage name: the provider's file name is shown to people, never used as a path."""
    extension = mimetypes.guess_extension((message.media_mime_type or "").split(";")[0].strip()) or ""
    return f"{message.type}{extension}"


def _media_download_enqueue(message_id: int) -> None:
    from messaging.tasks.inbound import media_download

    try:
        media_download.delay(message_id)
    except Exception:
        # The row stays `pending` with its source: visible, and downloadable again by hand.
        logger.exception("media download of message %s not enqueued", message_id)


# --- numbers -----------------------------------------------------------------------------------------
def number_connection_update(*, number: WhatsAppNumber, event: ConnectionUpdate) -> None:
    """Record the number's connection state and when we last heard of it, and push it."""
    fields = ["last_seen_at"]
    number.last_seen_at = timezone.now()
    if event.state in WhatsAppNumber.State.values:
        number.state = event.state
        fields.append("state")
    if event.phone:
        try:
            number.phone = phone_normalize(event.phone)
            fields.append("phone")
        except ValidationError:
            logger.warning("number %s: provider reported an unreadable phone %r", number.pk, event.phone)
    number.save(update_fields=fields)
    number_changed(organization_id=number.organization_id)
    number_state_event(number, reason=event.reason)


def number_qr_update(*, number: WhatsAppNumber, event: QrUpdate) -> None:
    """Cache the number's new QR (or pairing code) for its page, and tell the page it changed."""
    qr = {"qr_image": event.qr_image, "qr_code": event.qr_code, "pairing_code": event.pairing_code}
    transaction.on_commit(lambda: cache.set(qr_cache_key(number.pk), qr, settings.QR_CACHE_SECONDS))
    if number.state != WhatsAppNumber.State.WAITING_FOR_QR_SCAN:
        number.state = WhatsAppNumber.State.WAITING_FOR_QR_SCAN
        number.save(update_fields=["state"])
        number_changed(organization_id=number.organization_id)
    event_append(
        organization_id=number.organization_id,
        type="number.qr",
        number_id=number.pk,
        data={
            "number": number.pk,
            "qr_code": event.qr_code if len(event.qr_code) <= 1024 else "",
            "pairing_code": event.pairing_code,
            "has_image": bool(event.qr_image),
        },
    )


# --- media -------------------------------------------------------------------------------------------
class MediaDownloadError(Exception):
    """A download failed; `permanent` ones (the provider says the media is gone) are not retried."""

    def __init__(self, message: str, *, permanent: bool):
        super().__init__(message)
        self.message = message
        self.permanent = permanent


def media_fetch(*, message: Message) -> tuple[bytes, str]:
    """Download a message's media from its provider; return its bytes and MIME type.

    Raise MediaDownloadError when the provider does not give it.
    """
    number = message.number
    target = number_provider_target(number)
    try:
        if number.provider == ProviderName.META_CLOUD:
            return MetaCloudAdapter().media_download(target, message.media_source)
        response = provider_request(target, "GET", message.media_source, **_media_auth(number))
    except ProviderError as error:
        raise MediaDownloadError(error.message, permanent=error.permanent) from error
    return response.content, response.headers.get("Content-Type", "")


def _media_auth(number: WhatsAppNumber) -> dict:
    # Twilio serves media with HTTP Basic auth when the account turns it on; sending it is harmless.
    credentials = number.credentials or {}
    if number.provider == ProviderName.TWILIO and credentials.get("account_sid") and credentials.get("auth_token"):
        return {"auth": (credentials["account_sid"], credentials["auth_token"])}
    return {}


def _message_locked(message_id: int) -> Message | None:
    """Lock a message row for a media change, after its organization's event-log lock (the one order)."""
    organization_id = Message.objects.filter(pk=message_id).values_list("organization_id", flat=True).first()
    if organization_id is None:
        return None
    event_log_lock(organization_id)
    return Message.objects.select_for_update().filter(pk=message_id).first()


def media_pending_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Re-enqueue media downloads a lost task or a killed worker left pending; fail the hopeless ones.

    A download pending longer than MEDIA_STUCK_AFTER_SECONDS (longer than all its retries take)
    lost its task: it is enqueued again. One still pending after twice that is failed with a
    reason, so the message shows why its attachment is missing instead of waiting forever.
    Return how many were enqueued and failed.
    """
    now = now or timezone.now()
    stuck_after = timedelta(seconds=settings.MEDIA_STUCK_AFTER_SECONDS)
    pending = Message.objects.filter(media_state=Message.MediaState.PENDING)
    hopeless = list(pending.filter(created_at__lt=now - 2 * stuck_after).values_list("pk", flat=True)[:SWEEP_BATCH])
    for message_id in hopeless:
        with transaction.atomic():
            message_media_fail(
                message_id=message_id, error="The download did not finish; ask the contact to send it again."
            )
    lost = pending.filter(created_at__lt=now - stuck_after, created_at__gte=now - 2 * stuck_after)
    lost_ids = list(lost.order_by("id").values_list("pk", flat=True)[:SWEEP_BATCH])
    for message_id in lost_ids:
        _media_download_enqueue(message_id)
    if hopeless or lost_ids:
        logger.info("media sweep: %s download(s) enqueued again, %s failed", len(lost_ids), len(hopeless))
    return {"enqueued": len(lost_ids), "failed": len(hopeless)}


@transaction.atomic
def message_media_store(*, message_id: int, content: bytes, mime_type: str) -> Message | None:
    """Keep downloaded media in our storage; return the message, or None if it needs nothing."""
    message = _message_locked(message_id)
    if message is None or message.media_state == Message.MediaState.STORED:
        return None  # deleted meanwhile, or a second delivery of the task: download once
    if mime_type and not message.media_mime_type:
        message.media_mime_type = mime_type.split(";")[0].strip()[:100]
    message.media.save(media_filename(message), ContentFile(content), save=False)
    message.media_state = Message.MediaState.STORED
    message.media_error = ""
    message.save(update_fields=["media", "media_mime_type", "media_state", "media_error", "updated_at"])
    _media_event(message)
    return message


@transaction.atomic
def message_media_fail(*, message_id: int, error: str) -> Message | None:
    """Record that the media could not be downloaded, for people to see; never drop it silently."""
    message = _message_locked(message_id)
    if message is None or message.media_state == Message.MediaState.STORED:
        return None
    message.media_state = Message.MediaState.FAILED
    message.media_error = error[:2000]
    message.save(update_fields=["media_state", "media_error", "updated_at"])
    _media_event(message)
    return message


def _media_event(message: Message) -> None:
    event_append(
        organization_id=message.organization_id,
        type="message.media",
        chat_id=message.chat_id,
        data={"message": message.pk, "media_state": message.media_state, "media_error": message.media_error},
    )
