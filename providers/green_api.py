"""Green API (green-api.com), the hosted WhatsApp API: one paid "instance" per number.

Contract: ../shared/reference/providers.md section 2. Every call is
`{apiUrl}/waInstance{idInstance}/{method}/{apiTokenInstance}`: the token travels in the URL path, so
every error this module raises is scrubbed of it, and chained exceptions (whose text holds the URL)
are dropped.

target.credentials:
- `id_instance`: the instance number from the Green API console ("1101234567");
- `api_token`: the instance's apiTokenInstance (falls back to target.api_key);
- `api_url`: the instance's API host ("https://7105.api.greenapi.com"); target.base_url wins over it;
- `media_url`: the instance's media host for uploads ("https://7105.media.greenapi.com"); by default
  target.base_url when set, else derived from api_url.
"""

import hmac
import json
import logging
import mimetypes
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from urllib.parse import urlsplit, urlunsplit

from django.utils import timezone

from providers.base import (
    STATE_BANNED,
    STATE_CONNECTED,
    STATE_CONNECTING,
    STATE_DISCONNECTED,
    STATE_WAITING_FOR_QR_SCAN,
    ConnectionUpdate,
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

DEFAULT_API_URL = "https://api.green-api.com"
_REDACTED = "***"

# getStateInstance / stateInstanceChanged values (providers.md 2.4). yellowCard still sends and
# receives, so it counts as connected; sleepMode is the older docs' name for an idle session.
_STATES = {
    "authorized": STATE_CONNECTED,
    "yellowCard": STATE_CONNECTED,
    "notAuthorized": STATE_WAITING_FOR_QR_SCAN,
    "blocked": STATE_BANNED,
    "starting": STATE_CONNECTING,
    "sleepMode": STATE_DISCONNECTED,
}
_STATE_REASONS = {
    "yellowCard": "yellowCard: WhatsApp suspects this number of spam and may restrict sending",
    "blocked": "blocked: WhatsApp banned this number",
    "sleepMode": "sleepMode: the phone's session is asleep",
}

_DELIVERY_STATUSES = {"sent": "sent", "delivered": "delivered", "read": "read"}
_FAILED_STATUS_MESSAGES = {
    "failed": "WhatsApp could not deliver the message.",
    "noAccount": "The recipient has no WhatsApp account.",
    "notInGroup": "This number is not a member of the group.",
    "yellowCard": "WhatsApp suspects this number of spam and did not send the message.",
}

_FILE_MESSAGE_TYPES = {
    "imageMessage": "image",
    "videoMessage": "video",
    "documentMessage": "document",
    "audioMessage": "audio",
    "stickerMessage": "sticker",
}
_MESSAGE_WEBHOOKS = {
    "incomingMessageReceived": False,
    "outgoingAPIMessageReceived": True,  # sent through our API: echoed back
    "outgoingMessageReceived": True,  # typed on the phone itself
}
_DEFAULT_EXTENSIONS = {"image": ".jpg", "video": ".mp4", "audio": ".ogg", "sticker": ".webp", "document": ".bin"}
# mimetypes' first guesses are odd for some types (.jpe, .oga); WhatsApp clients expect these.
_PREFERRED_EXTENSIONS = {"image/jpeg": ".jpg", "audio/ogg": ".ogg", "audio/mpeg": ".mp3", "text/plain": ".txt"}

# outgoingMessageWebhook too: a reply typed on the phone belongs in the shared inbox's history.
_WEBHOOK_FLAGS = (
    "incomingWebhook",
    "outgoingWebhook",
    "outgoingAPIMessageWebhook",
    "outgoingMessageWebhook",
    "stateWebhook",
)


@dataclass(frozen=True)
class _Instance:
    id_instance: str
    api_token: str
    api_url: str
    media_url: str

    def method_url(self, method: str, *, media: bool = False) -> str:
        host = self.media_url if media else self.api_url
        return f"{host}/waInstance{self.id_instance}/{method}/{self.api_token}"

    def redact(self, text: str) -> str:
        return text.replace(self.api_token, _REDACTED) if self.api_token else text


class GreenApiAdapter(ProviderAdapter):
    name = "green_api"

    # --- connection ------------------------------------------------------------------------------
    def provision(self, target: ProviderTarget) -> ConnectResult:
        """Point the instance's webhooks at us (with our secret), then return its state or QR.

        Green API instances are bought and created in its console, so "provisioning" is settings only.
        Raise ProviderError when the target has no webhook URL or Green API refuses the settings.
        """
        if not target.webhook_url:
            raise ProviderError("Green API needs a webhook URL to report messages to us.", permanent=True)
        settings = {"webhookUrl": target.webhook_url, "webhookUrlToken": target.webhook_secret}
        settings.update(dict.fromkeys(_WEBHOOK_FLAGS, "yes"))
        self._settings_save(target, settings)
        state = self.connection_state(target)
        if state == STATE_WAITING_FOR_QR_SCAN:
            return self.connect(target)
        return ConnectResult(state=state)

    def connect(self, target: ProviderTarget, *, phone: str = "") -> ConnectResult:
        """Return a QR code to scan, or a pairing code for `phone`.

        Raise ProviderError when Green API cannot give one (the instance is starting, say).
        """
        if phone:
            return self._pairing_code(target, phone)
        payload = self._call_object(target, "GET", "qr")
        kind = payload.get("type")
        if kind == "qrCode" and payload.get("message"):
            return ConnectResult(
                state=STATE_WAITING_FOR_QR_SCAN, qr_image="data:image/png;base64," + payload["message"]
            )
        if kind == "alreadyLogged":
            return ConnectResult(state=STATE_CONNECTED)
        # {"type": "error"} (providers.md 2.2): mostly an instance still starting, so worth a retry.
        raise ProviderError(f"Green API gave no QR code: {payload.get('message') or kind}", permanent=False)

    def _pairing_code(self, target: ProviderTarget, phone: str) -> ConnectResult:
        # getAuthorizationCode wants phoneNumber as a JSON integer, not a string (providers.md 2.2).
        body = {"phoneNumber": int(_digits_of(phone))}
        payload = self._call_object(target, "POST", "getAuthorizationCode", json=body)
        if not payload.get("status") or not payload.get("code"):
            raise ProviderError("Green API refused to give a pairing code for this number.", permanent=True)
        return ConnectResult(state=STATE_WAITING_FOR_QR_SCAN, pairing_code=str(payload["code"]))

    def connection_state(self, target: ProviderTarget) -> str:
        """Return the normalized state from getStateInstance."""
        state = self._call_object(target, "GET", "getStateInstance").get("stateInstance", "")
        if state == "yellowCard":
            logger.warning("Green API instance %s is on a yellow card (spam suspicion)", target.instance_name)
        return _state_of(state)

    # --- messages --------------------------------------------------------------------------------
    def send_text(self, target: ProviderTarget, *, to: str, text: str, quoted_message_id: str = "") -> SendResult:
        """Send a text with sendMessage.

        Raise ProviderError (permanent) for a malformed recipient or an exhausted quota.
        """
        body = {"chatId": chat_id_for(to), "message": text}
        if quoted_message_id:
            body["quotedMessageId"] = quoted_message_id
        return self._sent(body["chatId"], self._call_object(target, "POST", "sendMessage", json=body))

    def send_media(self, target: ProviderTarget, *, to: str, media: MediaPayload) -> SendResult:
        """Send a file by URL (sendFileByUrl) or by upload to the media host (sendFileByUpload).

        Raise ProviderError (permanent) when the media has neither URL nor content.
        """
        chat_id = chat_id_for(to)
        filename = media_filename(media)
        if media.url:
            body = {"chatId": chat_id, "urlFile": media.url, "fileName": filename, "caption": media.caption}
            return self._sent(chat_id, self._call_object(target, "POST", "sendFileByUrl", json=body))
        if media.content:
            fields = {"chatId": chat_id, "fileName": filename, "caption": media.caption}
            files = {"file": (filename, media.content, media.mime_type or "application/octet-stream")}
            payload = self._call_object(target, "POST", "sendFileByUpload", media=True, data=fields, files=files)
            return self._sent(chat_id, payload)
        raise ProviderError("Media needs a URL or content to send.", permanent=True)

    def _sent(self, chat_id: str, payload: dict) -> SendResult:
        message_id = payload.get("idMessage")
        if not message_id:
            # Permanent on purpose: Green API has no idempotency key (providers.md 2.3), so a retry
            # of a send that may have gone out could message the contact twice.
            raise ProviderError("Green API accepted the send but returned no idMessage.", permanent=True)
        return SendResult(provider_message_id=str(message_id), recipient_id=chat_id, raw=payload)

    def mark_read(self, target: ProviderTarget, *, chat_id: str, provider_message_id: str) -> None:
        """Mark the chat read up to `provider_message_id` with readChat.

        Raise ProviderError when Green API answers setRead false.
        """
        body = {"chatId": chat_id_for(chat_id)}
        if provider_message_id:
            body["idMessage"] = provider_message_id
        if not self._call_object(target, "POST", "readChat", json=body).get("setRead"):
            raise ProviderError("Green API could not mark the chat as read.", permanent=True)

    # --- instance --------------------------------------------------------------------------------
    def logout(self, target: ProviderTarget) -> None:
        """Log the WhatsApp account out of the instance (GET logout)."""
        # {"isLogout": false} means there was no session to end: the goal is met either way.
        self._call_object(target, "GET", "logout")

    def restart(self, target: ProviderTarget) -> None:
        """Reboot the instance (GET reboot).

        Raise ProviderError (temporary) when Green API answers isReboot false.
        """
        if not self._call_object(target, "GET", "reboot").get("isReboot"):
            raise ProviderError("Green API did not reboot the instance.", permanent=False)

    def delete(self, target: ProviderTarget) -> None:
        """Detach the instance from us: stop its webhooks, then log WhatsApp out.

        Green API instances are created and deleted in its console (or its partner API, with a
        partner token we do not hold), not with the instance token; so "delete" leaves an empty,
        silent instance behind. Webhooks go first, or the logout's own stateInstanceChanged would
        be queued for an endpoint that no longer knows the number, and Green API retries for 24 h.
        """
        settings = {"webhookUrl": "", "webhookUrlToken": ""}
        settings.update(dict.fromkeys(_WEBHOOK_FLAGS, "no"))
        try:
            self._settings_save(target, settings)
            self.logout(target)
        except ProviderError as error:
            # 401/403/404: the instance or its token is gone already, which is what delete wants.
            if error.status_code not in (401, 403, 404):
                raise

    def health(self, target: ProviderTarget) -> HealthResult:
        """Time a getStateInstance call; never raise."""

        def probe() -> str:
            self._call_object(target, "GET", "getStateInstance")
            return ""

        return health_measure(probe)

    def _settings_save(self, target: ProviderTarget, settings: dict) -> None:
        if not self._call_object(target, "POST", "setSettings", json=settings).get("saveSettings"):
            raise ProviderError("Green API did not save the instance settings.", permanent=False)

    # --- HTTP ------------------------------------------------------------------------------------
    def _call_object(self, target: ProviderTarget, http_method: str, method: str, *, media: bool = False, **kwargs):
        """Call one Green API method; return its JSON object.

        Raise ProviderError, scrubbed of the token, for any failure or a body that is not an object.
        """
        instance = _instance_of(target)
        try:
            response = provider_request(target, http_method, instance.method_url(method, media=media), **kwargs)
        except ProviderError as error:
            raise _readable_error(error, method, instance) from None
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            raise ProviderError(
                f"Green API answered {method} with a body that is not a JSON object.",
                permanent=False,
                status_code=response.status_code,
                body=instance.redact(response.text[:1000]),
            )
        return payload

    # --- webhooks --------------------------------------------------------------------------------
    def parse_webhook(self, target: ProviderTarget, request: WebhookRequest) -> WebhookResult:
        """Check the Bearer token and the instance id, then turn the notification into events.

        Raise WebhookRejectedError: 401 without a token, 403 for a wrong token or another
        instance's notification, 400 for a body that is not a notification.
        """
        _check_token(target, request)
        payload = _payload_of(request)
        _check_instance(target, payload)
        try:
            event = _event_of(payload)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as error:
            kind = payload.get("typeWebhook")
            raise WebhookRejectedError(f"Malformed {kind} notification: {error!r}", status=400) from error
        return WebhookResult(events=[event] if event else [], instance_name=target.instance_name)


# --- helpers: credentials and errors -------------------------------------------------------------
def _instance_of(target: ProviderTarget) -> _Instance:
    credentials = target.credentials or {}
    id_instance = str(credentials.get("id_instance", "")).strip()
    api_token = str(credentials.get("api_token") or target.api_key or "").strip()
    if not id_instance.isdigit() or not api_token:
        raise ProviderError("Green API needs the instance's id_instance and api_token.", permanent=True)
    api_url = (target.base_url or credentials.get("api_url") or DEFAULT_API_URL).rstrip("/")
    media_url = (credentials.get("media_url") or target.base_url or media_url_for(api_url)).rstrip("/")
    return _Instance(id_instance=id_instance, api_token=api_token, api_url=api_url, media_url=media_url)


def media_url_for(api_url: str) -> str:
    """Return the media host paired with an API host: 7105.api.greenapi.com -> 7105.media.greenapi.com."""
    parts = urlsplit(api_url)
    labels = (parts.hostname or "").split(".")
    if "api" not in labels:
        return api_url  # a host of our own (a fake, a proxy) serves both
    labels[labels.index("api")] = "media"
    netloc = ".".join(labels) + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _readable_error(error: ProviderError, method: str, instance: _Instance) -> ProviderError:
    """Return `error` with a message a person can act on, and the API token scrubbed everywhere."""
    status = error.status_code
    body = instance.redact(error.body)
    message, code = instance.redact(error.message), error.code
    if status == 466:
        # The Developer plan's monthly quota (providers.md 2.3, docs 466-error-example-body).
        message, code = f"Green API quota exceeded on {method}: {_quota_description(body)}", "quota_exceeded"
    elif status in (401, 403):
        message, code = f"Green API rejected the instance id or API token on {method} (HTTP {status}).", "unauthorized"
    elif status == 404:
        message, code = f"Green API does not know {method} for this instance (HTTP 404).", "not_found"
    elif status == 400:
        message, code = f"Green API refused {method}: {_short(body)}", "bad_request"
    elif status == 429:
        wait = f"; retry after {error.retry_after:g} s" if error.retry_after is not None else ""
        message, code = f"Green API rate limit hit on {method} (HTTP 429){wait}.", "rate_limited"
    return ProviderError(
        message,
        permanent=error.permanent,
        retry_after=error.retry_after,
        status_code=status,
        code=code,
        circuit_open=error.circuit_open,
        body=body,
    )


def _quota_description(body: str) -> str:
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        for section in payload.values():
            if isinstance(section, dict) and "EXCEEDED" in str(section.get("status", "")):
                return str(section.get("description") or section.get("status"))
    return "the monthly quota of the instance's plan is used up."


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text[:limit] or "no details given"


# --- helpers: ids --------------------------------------------------------------------------------
def _digits_of(phone: str) -> str:
    digits = "".join(character for character in phone if character.isdigit())
    if not digits:
        raise ProviderError(f"{phone!r} is not a phone number.", permanent=True, code="bad_recipient")
    return digits


def chat_id_for(to: str) -> str:
    """Return Green API's chatId for `to`: a chat id as given, or `<digits>@c.us` for a phone.

    Raise ProviderError (permanent) when `to` has no digits.
    """
    to = to.strip()
    if "@" in to:
        # Reply to the exact id Green API gave (Mexico's 521 mobiles, groups; providers.md 2.4).
        return to
    return f"{_digits_of(to)}@c.us"


def media_filename(media: MediaPayload) -> str:
    """Return a file name with an extension, which sendFileByUrl requires (providers.md 2.2)."""
    for candidate in (media.filename, PurePosixPath(urlsplit(media.url).path).name):
        if candidate and PurePosixPath(candidate).suffix:
            return candidate
    stem = PurePosixPath(media.filename).stem or media.kind
    return stem + _extension_for(media)


def _extension_for(media: MediaPayload) -> str:
    mime_type = media.mime_type.split(";")[0].strip().lower()
    guessed = _PREFERRED_EXTENSIONS.get(mime_type) or (mimetypes.guess_extension(mime_type) if mime_type else None)
    return guessed or _DEFAULT_EXTENSIONS[media.kind]


def _state_of(state: str) -> str:
    if state not in _STATES:
        logger.warning("Green API reported an unknown instance state %r", state)
    return _STATES.get(state, STATE_DISCONNECTED)


def _phone_of(wid: str) -> str:
    digits = wid.split("@")[0]
    return f"+{digits}" if digits.isdigit() else ""


# --- helpers: webhooks ---------------------------------------------------------------------------
def _check_token(target: ProviderTarget, request: WebhookRequest) -> None:
    # Green API sends webhookUrlToken in Authorization; its own integration guard reads the part
    # after "Bearer " (greenapi-integration src/core/guard.ts), so accept that and a bare token.
    header = request.header("Authorization").strip()
    scheme, _, credentials = header.partition(" ")
    token = credentials.strip() if scheme.lower() == "bearer" else header
    if not token:
        raise WebhookRejectedError("Missing Authorization header.", status=401)
    if not target.webhook_secret or not hmac.compare_digest(token.encode(), target.webhook_secret.encode()):
        raise WebhookRejectedError("Wrong webhook token.", status=403)


def _payload_of(request: WebhookRequest) -> dict:
    try:
        payload = json.loads(request.body)
    except (ValueError, UnicodeDecodeError) as error:
        raise WebhookRejectedError("Body is not JSON.", status=400) from error
    if not isinstance(payload, dict) or not isinstance(payload.get("typeWebhook"), str):
        raise WebhookRejectedError("Body is not a Green API notification.", status=400)
    return payload


def _check_instance(target: ProviderTarget, payload: dict) -> None:
    instance_data = payload.get("instanceData")
    if not isinstance(instance_data, dict) or "idInstance" not in instance_data:
        raise WebhookRejectedError("Notification has no instanceData.idInstance.", status=400)
    expected = str((target.credentials or {}).get("id_instance", "")).strip()
    if not expected or str(instance_data["idInstance"]) != expected:
        # A leaked token must not let one instance's notifications land on another number.
        raise WebhookRejectedError("Notification is for another Green API instance.", status=403)


def _event_of(payload: dict) -> WebhookEvent | None:
    kind = payload["typeWebhook"]
    if kind in _MESSAGE_WEBHOOKS:
        return _message_of(payload, from_me=_MESSAGE_WEBHOOKS[kind])
    if kind == "outgoingMessageStatus":
        return _status_of(payload)
    if kind == "stateInstanceChanged":
        return _connection_of(payload)
    return None  # incomingCall, quotaExceeded, deviceInfo, incomingBlock...: nothing we track


def _timestamp_of(payload: dict) -> datetime:
    value = payload.get("timestamp")
    if value is None:
        return timezone.now()
    return datetime.fromtimestamp(int(value), tz=UTC)


def _message_of(payload: dict, *, from_me: bool) -> InboundMessage | None:
    sender_data = payload["senderData"]
    message_data = payload["messageData"]
    content = _content_of(message_data)
    if content is None:
        return None  # reactions, contacts, polls, edits, deletions: not messages we show
    chat_id = str(sender_data["chatId"])
    sender = str(sender_data.get("sender") or chat_id)
    quoted = message_data.get("quotedMessage") or {}
    return InboundMessage(
        provider_message_id=str(payload["idMessage"]),
        chat_id=chat_id,
        sender_ids=(sender,),
        timestamp=_timestamp_of(payload),
        sender_name=str(sender_data.get("senderName") or sender_data.get("senderContactName") or ""),
        from_me=from_me,
        is_group=chat_id.endswith("@g.us"),
        quoted_message_id=str(quoted.get("stanzaId") or ""),
        raw=payload,
        **content,
    )


def _content_of(message_data: dict) -> dict | None:
    """Return InboundMessage fields for a messageData variant, or None for one we do not show."""
    kind = message_data["typeMessage"]
    if kind == "textMessage":
        return {"type": "text", "text": str(message_data["textMessageData"]["textMessage"])}
    if kind in ("extendedTextMessage", "quotedMessage"):
        return {"type": "text", "text": str(message_data["extendedTextMessageData"]["text"])}
    if kind in _FILE_MESSAGE_TYPES:
        file_data = message_data["fileMessageData"]
        return {
            "type": _FILE_MESSAGE_TYPES[kind],
            "text": str(file_data.get("caption") or ""),
            "media_url": str(file_data.get("downloadUrl") or ""),
            "media_mime_type": str(file_data.get("mimeType") or ""),
            "media_filename": str(file_data.get("fileName") or ""),
        }
    if kind == "locationMessage":
        location = message_data["locationMessageData"]
        label = ", ".join(str(part) for part in (location.get("nameLocation"), location.get("address")) if part)
        return {
            "type": "location",
            "text": label,
            "latitude": float(location["latitude"]),
            "longitude": float(location["longitude"]),
        }
    return None


def _status_of(payload: dict) -> StatusUpdate | None:
    raw_status = payload["status"]
    timestamp = _timestamp_of(payload)
    message_id = str(payload["idMessage"])
    if raw_status in _DELIVERY_STATUSES:
        return StatusUpdate(provider_message_id=message_id, status=_DELIVERY_STATUSES[raw_status], timestamp=timestamp)
    if raw_status in _FAILED_STATUS_MESSAGES:
        return StatusUpdate(
            provider_message_id=message_id,
            status="failed",
            timestamp=timestamp,
            error_code=raw_status,
            error_message=str(payload.get("description") or _FAILED_STATUS_MESSAGES[raw_status]),
        )
    logger.info("Green API status %r for %s ignored", raw_status, message_id)
    return None


def _connection_of(payload: dict) -> ConnectionUpdate:
    state = str(payload["stateInstance"])
    wid = str(payload["instanceData"].get("wid") or "")
    reason = _STATE_REASONS.get(state, "" if state in _STATES else f"unknown Green API state {state!r}")
    return ConnectionUpdate(state=_state_of(state), phone=_phone_of(wid), reason=reason)
