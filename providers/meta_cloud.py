"""Meta WhatsApp Cloud API: the Graph API endpoints of one phone number, and its signed webhooks.

There is no instance and no QR code on the Cloud API: a number is registered once in the customer's
WhatsApp Business Account, and our access is a bearer token. So "connecting" means checking that the
token can read the phone number, and logout, restart and delete have nothing to act on.

Credentials (`target.credentials`):
- `phone_number_id`: the Graph id of the business number (not the phone number itself);
- `access_token`: a system-user (or temporary) token with whatsapp_business_messaging;
- `app_secret`: the Meta app's secret, the key of the `X-Hub-Signature-256` webhook signature.
`target.webhook_secret` is the verify token Meta echoes in the GET subscription handshake, and
`target.base_url` is the Graph base including its version (`https://graph.facebook.com/v21.0`).

Reference: shared/reference/providers.md section 3 (Graph API errors, webhooks and their quirks).
"""

import hashlib
import hmac
import json
import logging
import mimetypes
import re
from datetime import UTC, datetime

import requests

from providers.base import (
    STATE_CONNECTED,
    ConnectResult,
    HealthResult,
    InboundMessage,
    MediaPayload,
    ProviderAdapter,
    ProviderError,
    ProviderTarget,
    SendResult,
    StatusUpdate,
    WebhookEvent,
    WebhookRejectedError,
    WebhookRequest,
    WebhookResult,
    health_measure,
)
from providers.http import provider_request

logger = logging.getLogger(__name__)

PHONE_NUMBER_FIELDS = "display_phone_number,verified_name,quality_rating"

# Graph error codes (providers.md 3.2). Meta sends most of them with HTTP 400, so the HTTP status
# says little: a throughput limit is a 400 that must be retried, a bad recipient a 400 that must not.
TEMPORARY_ERROR_CODES = frozenset(
    {
        1,  # API unknown: a Graph hiccup
        2,  # API service temporarily unavailable
        4,  # application request limit (API-call throttling)
        80007,  # WhatsApp Business Account rate limit
        130429,  # throughput limit: 80 messages/s per number by default
        131000,  # "Something went wrong": Meta's generic retryable failure
        131016,  # service unavailable
        131056,  # pair rate limit: too many messages to the same user; wait and retry
        133004,  # server temporarily unavailable
    }
)
PERMANENT_ERROR_CODES = frozenset(
    {
        0,  # AuthException
        3,  # capability or permission missing
        10,  # permission denied
        100,  # invalid parameter (a malformed recipient, a missing field)
        190,  # access token expired or invalid
        368,  # temporarily blocked for policy violations: retrying makes it worse
        131009,  # parameter value is not valid
        131026,  # message undeliverable (not on WhatsApp, old app, terms not accepted)
        131030,  # recipient not in the allowed list (test numbers)
        131047,  # re-engagement: more than 24 h since the user's last message, a template is needed
        131051,  # unsupported message type
        131052,  # media download error
        131053,  # media upload error
    }
)
TEMPLATE_ERROR_CODES = range(132000, 133000)  # template missing, paused, wrong parameters...
AUTH_ERROR_CODES = range(200, 300)  # permission errors

# Webhook `statuses[].status` -> our delivery status. `played` is a voice message listened to,
# which for our inbox is the same thing as read.
STATUS_MAP = {"sent": "sent", "delivered": "delivered", "read": "read", "played": "read", "failed": "failed"}
MEDIA_MESSAGE_TYPES = frozenset({"image", "video", "audio", "document", "sticker"})
CAPTIONED_MEDIA_KINDS = frozenset({"image", "video", "document"})  # Meta rejects captions elsewhere

# A business-scoped user id (BSUID): ISO country code, a dot, then up to 128 characters, e.g.
# `BR.1234567890123456789` or a parent id `US.ENT.1181...`. Users with usernames may have no phone.
BSUID_PATTERN = re.compile(r"^[A-Z]{2}\.[A-Za-z0-9.]+$")
SIGNATURE_PREFIX = "sha256="


class MetaCloudAdapter(ProviderAdapter):
    """The WhatsApp Cloud API of one business phone number, through the Graph API."""

    name = "meta_cloud"

    # --- number ---------------------------------------------------------------------------------
    def provision(self, target: ProviderTarget) -> ConnectResult:
        """Check the token can read the phone number; Meta has no instance to create.

        The webhook URL and its verify token are set once per Meta app in the app dashboard, not
        per number, so there is nothing to point at us here. Raise ProviderError (permanent for
        a bad token or an unknown phone number id) when the number cannot be read.
        """
        self.phone_number_get(target)
        return ConnectResult(state=STATE_CONNECTED)

    def connect(self, target: ProviderTarget, *, phone: str = "") -> ConnectResult:
        """Report the number connected once the token can read it; the Cloud API has no QR or pairing code.

        Raise ProviderError when the number cannot be read.
        """
        return self.provision(target)

    def connection_state(self, target: ProviderTarget) -> str:
        """Return `connected` when the phone number answers.

        Raise ProviderError: permanent for an expired or wrong token (code 190) or unknown number.
        """
        self.phone_number_get(target)
        return STATE_CONNECTED

    def phone_number_get(self, target: ProviderTarget) -> dict:
        """Return the phone number's display number, verified name and quality rating."""
        return self._graph(
            target, "GET", f"/{_credential(target, 'phone_number_id')}", params={"fields": PHONE_NUMBER_FIELDS}
        )

    def logout(self, target: ProviderTarget) -> None:
        """Do nothing: a Cloud API number has no session to log out of.

        The closest Graph call, POST /{phone-number-id}/deregister, takes the number off the Cloud
        API for every app of the business and needs the two-step PIN to undo; disconnecting a
        number in the CRM must not do that. Revoking our access is done by deleting its token.
        """

    def restart(self, target: ProviderTarget) -> None:
        """Do nothing: there is no session or server of ours at Meta to restart.

        Restarting cures a stuck Baileys session on the self-hosted providers; Meta runs the
        WhatsApp client itself, so a silent Cloud API number is a Meta incident, not ours.
        """

    def delete(self, target: ProviderTarget) -> None:
        """Do nothing: the number belongs to the customer's WhatsApp Business Account, not to us.

        Removing it from the CRM only forgets our credentials; the number is managed (and, if the
        customer wishes, deleted) in Meta Business Manager.
        """

    def health(self, target: ProviderTarget) -> HealthResult:
        """Time a read of the phone number; never raises."""

        def probe() -> str:
            self.phone_number_get(target)
            return ""

        return health_measure(probe)

    # --- sending ----------------------------------------------------------------------------------
    def send_text(self, target: ProviderTarget, *, to: str, text: str, quoted_message_id: str = "") -> SendResult:
        """Send a text message; quote `quoted_message_id` when given.

        Raise ProviderError (permanent for a bad recipient or a rejected message).
        """
        payload = {"type": "text", "text": {"body": text, "preview_url": False}}
        if quoted_message_id:
            payload["context"] = {"message_id": quoted_message_id}
        return self._message_send(target, to, payload)

    def send_media(self, target: ProviderTarget, *, to: str, media: MediaPayload) -> SendResult:
        """Send media by link, or upload its bytes first and send it by media id.

        Raise ProviderError (permanent when the media has neither URL nor bytes, or Meta rejects it).
        """
        if media.url:
            media_object = {"link": media.url}
        elif media.content:
            media_object = {"id": self.media_upload(target, media)}
        else:
            raise ProviderError("The media to send has neither a URL nor content.", permanent=True)
        if media.caption and media.kind in CAPTIONED_MEDIA_KINDS:
            media_object["caption"] = media.caption
        if media.kind == "document" and media.filename:
            media_object["filename"] = media.filename
        return self._message_send(target, to, {"type": media.kind, media.kind: media_object})

    def media_upload(self, target: ProviderTarget, media: MediaPayload) -> str:
        """Upload media bytes to Meta and return the media id to send them by."""
        mime_type = media.mime_type or mimetypes.guess_type(media.filename)[0] or "application/octet-stream"
        filename = media.filename or f"upload{mimetypes.guess_extension(mime_type) or ''}"
        body = self._graph(
            target,
            "POST",
            f"/{_credential(target, 'phone_number_id')}/media",
            data={"messaging_product": "whatsapp", "type": mime_type},
            files={"file": (filename, media.content, mime_type)},
        )
        media_id = str(body.get("id") or "")
        if not media_id:
            raise ProviderError("Meta accepted the media upload but returned no media id.", permanent=False)
        return media_id

    def media_download(self, target: ProviderTarget, media_id: str) -> tuple[bytes, str]:
        """Return an inbound media's bytes and MIME type.

        Meta's webhooks carry only a media id (providers.md 3.1): GET /{media-id} gives a
        short-lived URL, which itself needs the same bearer token. Raise ProviderError when either
        step fails (permanent when the id is unknown or expired).
        """
        info = self._graph(target, "GET", f"/{media_id}")
        url = str(info.get("url") or "")
        if not url:
            raise ProviderError(f"Meta returned no download URL for media {media_id}.", permanent=True)
        response = self._request(target, "GET", url)
        mime_type = str(info.get("mime_type") or response.headers.get("Content-Type", ""))
        return response.content, mime_type

    def mark_read(self, target: ProviderTarget, *, chat_id: str, provider_message_id: str) -> None:
        """Mark an inbound message, and those before it, as read (blue ticks).

        Raise ProviderError when Meta refuses (permanent for an unknown message id).
        """
        body = self._graph(
            target,
            "POST",
            f"/{_credential(target, 'phone_number_id')}/messages",
            json={"messaging_product": "whatsapp", "status": "read", "message_id": provider_message_id},
        )
        if body.get("success") is not True:
            raise ProviderError(f"Meta did not confirm marking {provider_message_id} as read.", permanent=True)

    def _message_send(self, target: ProviderTarget, to: str, content: dict) -> SendResult:
        payload = {"messaging_product": "whatsapp", "recipient_type": "individual", **_recipient(to), **content}
        body = self._graph(target, "POST", f"/{_credential(target, 'phone_number_id')}/messages", json=payload)
        messages = body.get("messages") or [{}]
        contacts = body.get("contacts") or [{}]
        message_id = str(messages[0].get("id") or "")
        if not message_id:
            # Meta has no idempotency key (providers.md 3.1): retrying could send the message twice.
            raise ProviderError("Meta accepted the message but returned no message id.", permanent=True)
        # wa_id may differ from what we sent (Brazil's ninth digit, Mexico's 521): replies go to it.
        recipient_id = str(contacts[0].get("wa_id") or contacts[0].get("user_id") or "")
        return SendResult(provider_message_id=message_id, recipient_id=recipient_id, raw=body)

    # --- webhooks ---------------------------------------------------------------------------------
    def parse_webhook(self, target: ProviderTarget, request: WebhookRequest) -> WebhookResult:
        """Answer the GET subscription handshake, or verify a POST's signature and read its events.

        Raise WebhookRejectedError: 403 for a wrong verify token or signature, 401 for a missing
        signature, 400 for a body that is not Meta's JSON.
        """
        return _parse_webhook(target, request)

    # --- HTTP -------------------------------------------------------------------------------------
    def _graph(self, target: ProviderTarget, method: str, path: str, **kwargs) -> dict:
        """Call the Graph API at `path` and return its JSON object.

        Raise ProviderError classified by Meta's error code, also for errors sent with HTTP 200.
        """
        response = self._request(target, method, f"{target.base_url.rstrip('/')}{path}", **kwargs)
        try:
            body = response.json()
        except ValueError as error:
            raise ProviderError(
                f"Meta answered {method} {path} with a body that is not JSON.",
                permanent=False,
                status_code=response.status_code,
            ) from error
        if not isinstance(body, dict):
            raise ProviderError(f"Meta answered {method} {path} with unexpected JSON.", permanent=False)
        if isinstance(body.get("error"), dict):
            raise _graph_error(target, body["error"], status_code=response.status_code, fallback_permanent=True)
        return body

    def _request(self, target: ProviderTarget, method: str, url: str, **kwargs) -> requests.Response:
        headers = {**kwargs.pop("headers", {}), "Authorization": f"Bearer {_credential(target, 'access_token')}"}
        try:
            return provider_request(target, method, url, headers=headers, **kwargs)
        except ProviderError as error:
            # Re-read outside the breaker on purpose: a throughput limit (a 400 that must be
            # retried) says nothing about Meta being down, so it must not open the circuit.
            raise _reclassified(target, error) from error


def _reclassified(target: ProviderTarget, error: ProviderError) -> ProviderError:
    """Return `error` classified by the Graph error code in its body, when it has one."""
    try:
        body = json.loads(error.body) if error.body else None
    except ValueError:
        body = None
    if not (isinstance(body, dict) and isinstance(body.get("error"), dict)):
        return error
    return _graph_error(
        target,
        body["error"],
        status_code=error.status_code,
        fallback_permanent=error.permanent,
        retry_after=error.retry_after,
    )


def _graph_error(
    target: ProviderTarget,
    error: dict,
    *,
    status_code: int | None,
    fallback_permanent: bool,
    retry_after: float | None = None,
) -> ProviderError:
    code = error.get("code")
    # Graph marks some failures `is_transient`; it decides only for codes we do not know.
    permanent = _is_permanent_code(code, fallback=fallback_permanent and error.get("is_transient") is not True)
    parts = [f"Meta Cloud API error {code}"]
    if error.get("error_subcode"):
        parts.append(f"(subcode {error['error_subcode']})")
    message = f"{' '.join(parts)}: {error.get('message') or 'no message'}"
    details = (error.get("error_data") or {}).get("details") if isinstance(error.get("error_data"), dict) else ""
    if details:
        message += f" ({details})"
    if error.get("fbtrace_id"):
        message += f" [fbtrace_id {error['fbtrace_id']}]"
    return ProviderError(
        _secrets_redacted(target, message),
        permanent=permanent,
        retry_after=None if permanent else retry_after,
        status_code=status_code,
        code=str(code) if code is not None else None,
        body=_secrets_redacted(target, json.dumps({"error": error})),
    )


def _is_permanent_code(code, *, fallback: bool) -> bool:
    if not isinstance(code, int):
        return fallback
    if code in TEMPORARY_ERROR_CODES:
        return False
    if code in PERMANENT_ERROR_CODES or code in TEMPLATE_ERROR_CODES or code in AUTH_ERROR_CODES:
        return True
    return fallback


def _secrets_redacted(target: ProviderTarget, text: str) -> str:
    # Graph echoes parts of the request in some messages ("Invalid OAuth access token - Cannot
    # parse access token"); make sure no credential can ride along into a log line.
    for name in ("access_token", "app_secret"):
        secret = str(target.credentials.get(name) or "")
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def _credential(target: ProviderTarget, name: str) -> str:
    value = str(target.credentials.get(name) or "")
    if not value:
        raise ProviderError(f"The Meta Cloud API number has no {name} configured.", permanent=True)
    return value


def _recipient(to: str) -> dict:
    """Return the recipient fields of a send: `to` as bare digits, or `recipient` for a BSUID."""
    value = (to or "").strip()
    if BSUID_PATTERN.match(value):
        # Users who adopted a username may have no phone; Meta takes their BSUID in `recipient`.
        return {"recipient": value}
    digits = re.sub(r"\D", "", value.removeprefix("whatsapp:"))
    if not digits:
        raise ProviderError(f"{to!r} is not a phone number or WhatsApp user id.", permanent=True)
    return {"to": digits}


# --- webhooks -------------------------------------------------------------------------------------
def _parse_webhook(target: ProviderTarget, request: WebhookRequest) -> WebhookResult:
    if request.method.upper() == "GET":
        return _subscription_verify(target, request)
    _signature_verify(target, request)
    payload = _json_object(request.body)
    phone_number_id = str(target.credentials.get("phone_number_id") or "")
    events: list[WebhookEvent] = []
    is_ours = False
    for value in _message_change_values(payload):
        if str((value.get("metadata") or {}).get("phone_number_id") or "") != phone_number_id:
            # One Meta app serves many numbers and posts them all to the same URL.
            continue
        is_ours = True
        events.extend(_inbound_messages(value))
        events.extend(_status_updates(value))
    return WebhookResult(events=events, instance_name=phone_number_id if is_ours else "")


def _subscription_verify(target: ProviderTarget, request: WebhookRequest) -> WebhookResult:
    """Answer Meta's GET handshake (hub.mode=subscribe) with the challenge, as plain text."""
    mode = _query_value(request, "hub.mode")
    token = _query_value(request, "hub.verify_token")
    challenge = _query_value(request, "hub.challenge")
    expected = target.webhook_secret
    if mode != "subscribe" or not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        raise WebhookRejectedError("Webhook verify token does not match.", status=403)
    return WebhookResult(events=[], response_body=challenge.encode(), response_content_type="text/plain")


def _signature_verify(target: ProviderTarget, request: WebhookRequest) -> None:
    """Check X-Hub-Signature-256 over the raw bytes; Meta escapes non-ASCII, so re-serialised JSON never matches."""
    header = request.header("X-Hub-Signature-256").strip()
    if not header:
        raise WebhookRejectedError("Missing X-Hub-Signature-256 header.", status=401)
    app_secret = str(target.credentials.get("app_secret") or "")
    if not app_secret:
        raise WebhookRejectedError("No app secret is configured to check the webhook signature.", status=403)
    expected = SIGNATURE_PREFIX + hmac.new(app_secret.encode(), request.body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(header.lower().encode(), expected.encode()):
        raise WebhookRejectedError("Webhook signature does not match.", status=403)


def _json_object(body: bytes) -> dict:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise WebhookRejectedError("Webhook body is not JSON.", status=400) from error
    if not isinstance(payload, dict):
        raise WebhookRejectedError("Webhook body is not a JSON object.", status=400)
    return payload


def _message_change_values(payload: dict) -> list[dict]:
    """Return the `value` of every `messages` change in every entry (Meta batches them)."""
    entries = payload.get("entry", [])
    if not isinstance(entries, list):
        raise WebhookRejectedError("Webhook `entry` is not a list.", status=400)
    values = []
    for entry in entries:
        changes = entry.get("changes", []) if isinstance(entry, dict) else None
        if not isinstance(changes, list):
            raise WebhookRejectedError("Webhook entry has no list of changes.", status=400)
        for change in changes:
            if not isinstance(change, dict):
                raise WebhookRejectedError("Webhook change is not an object.", status=400)
            # Other fields (account_update, message_template_status_update...) are not ours to act on.
            if change.get("field") == "messages" and isinstance(change.get("value"), dict):
                values.append(change["value"])
    return values


def _inbound_messages(value: dict) -> list[InboundMessage]:
    contacts = [contact for contact in value.get("contacts") or [] if isinstance(contact, dict)]
    messages = []
    for message in _object_list(value, "messages"):
        contact = _sender_contact(message, contacts)
        inbound = _inbound_message(message, contact)
        if inbound is not None:
            messages.append(inbound)
    return messages


def _sender_contact(message: dict, contacts: list[dict]) -> dict:
    sender = message.get("from") or message.get("from_user_id")
    for contact in contacts:
        if sender and sender in (contact.get("wa_id"), contact.get("user_id")):
            return contact
    return contacts[0] if len(contacts) == 1 else {}


def _inbound_message(message: dict, contact: dict) -> InboundMessage | None:
    message_type = message.get("type")
    content = message.get(message_type) if isinstance(message.get(message_type), dict) else {}
    if message_type == "text":
        fields = {"type": "text", "text": str(content.get("body") or "")}
    elif message_type in MEDIA_MESSAGE_TYPES:
        # Only a media id arrives (left in `raw`); media_download fetches the bytes.
        fields = {
            "type": message_type,
            "text": str(content.get("caption") or ""),
            "media_mime_type": str(content.get("mime_type") or ""),
            "media_filename": str(content.get("filename") or ""),
        }
    elif message_type == "location":
        fields = {
            "type": "location",
            "text": "\n".join(str(content[key]) for key in ("name", "address") if content.get(key)),
            "latitude": _float_or_none(content.get("latitude")),
            "longitude": _float_or_none(content.get("longitude")),
        }
    else:
        # Reactions, unsupported messages, button replies, orders, system notices: not chat messages.
        logger.debug("meta_cloud: skipping inbound message of type %r", message_type)
        return None
    wa_id = str(message.get("from") or contact.get("wa_id") or "")
    user_id = str(message.get("from_user_id") or contact.get("user_id") or "")
    sender_ids = tuple(identifier for identifier in (wa_id, user_id) if identifier)
    if not sender_ids:
        raise WebhookRejectedError("Webhook message has no sender.", status=400)
    context = message.get("context") if isinstance(message.get("context"), dict) else {}
    return InboundMessage(
        provider_message_id=_required_text(message, "id"),
        chat_id=sender_ids[0],  # replies go to the wa_id Meta gave, or the BSUID when there is none
        sender_ids=sender_ids,
        timestamp=_timestamp(message),
        sender_name=str((contact.get("profile") or {}).get("name") or ""),
        quoted_message_id=str(context.get("id") or ""),
        raw=message,
        **fields,
    )


def _status_updates(value: dict) -> list[StatusUpdate]:
    updates = []
    for status in _object_list(value, "statuses"):
        normalized = STATUS_MAP.get(status.get("status"))
        if normalized is None:
            logger.debug("meta_cloud: skipping status %r", status.get("status"))
            continue
        error = next(iter(_object_list(status, "errors")), {})
        updates.append(
            StatusUpdate(
                provider_message_id=_required_text(status, "id"),
                status=normalized,
                timestamp=_timestamp(status),
                error_code=str(error.get("code") or ""),
                error_message=_status_error_message(error),
            )
        )
    return updates


def _status_error_message(error: dict) -> str:
    title = str(error.get("title") or error.get("message") or "")
    details = (error.get("error_data") or {}).get("details") if isinstance(error.get("error_data"), dict) else ""
    return f"{title}: {details}" if title and details else title or str(details or "")


def _object_list(container: dict, key: str) -> list[dict]:
    items = container.get(key) or []
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise WebhookRejectedError(f"Webhook `{key}` is not a list of objects.", status=400)
    return items


def _required_text(item: dict, key: str) -> str:
    value = item.get(key)
    if not value:
        raise WebhookRejectedError(f"Webhook item has no `{key}`.", status=400)
    return str(value)


def _timestamp(item: dict) -> datetime:
    # Meta's timestamps are epoch seconds as STRINGS ("1741616525"), in UTC.
    try:
        return datetime.fromtimestamp(int(item["timestamp"]), tz=UTC)
    except (KeyError, TypeError, ValueError, OverflowError, OSError) as error:
        raise WebhookRejectedError("Webhook item has no valid timestamp.", status=400) from error


def _float_or_none(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _query_value(request: WebhookRequest, name: str) -> str:
    values = request.query.get(name) or []
    return str(values[0]) if values else ""


def webhook_phone_number_ids(body: bytes) -> list[str]:
    """Return the phone number ids a webhook body is about, to route it before verifying it.

    One Meta app posts every number's events to the one URL set in its dashboard, so the endpoint
    may need to find the number (and its app secret) from `metadata.phone_number_id` first.
    """
    try:
        values = _message_change_values(_json_object(body))
    except WebhookRejectedError:
        return []
    ids = (str((value.get("metadata") or {}).get("phone_number_id") or "") for value in values)
    return list(dict.fromkeys(identifier for identifier in ids if identifier))


def media_id_of(message: InboundMessage) -> str:
    """Return the Meta media id of an inbound media message, for media_download; empty otherwise."""
    content = message.raw.get(message.type) if isinstance(message.raw, dict) else None
    return str(content.get("id") or "") if isinstance(content, dict) else ""
