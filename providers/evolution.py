"""Evolution API v2 (self-hosted, Baileys): one instance per number, paired by QR, and its webhooks.

Contract: shared/reference/providers.md section 1 (Evolution 2.3.x; the shapes of 1.8 to 2.2 are
still read where they differ, because self-hosted servers lag behind).

What the adapter needs from the `ProviderTarget`:
- `base_url`: the Evolution server (`https://evo.example.com`, no `/api` prefix);
- `api_key`: the server's global AUTHENTICATION_API_KEY, sent as the `apikey` header;
- `instance_name`: the number's instance on that server;
- `webhook_url` and `webhook_secret`: where Evolution must post this number's events, and the secret
  it must show. Evolution signs nothing, so provision configures a header of ours on the instance
  webhook, `authorization: Bearer <webhook_secret>`, and parse_webhook checks it;
- `credentials`: nothing (the global key does everything).

Connection states: Evolution's `connectionState` cannot tell whether a QR code is on screen, so
connection_state() reports `connecting` for its `connecting`; provision() and connect() answer
`waiting_for_qr_scan` when they return a QR or pairing code, as a `qrcode.updated` webhook
(QrUpdate) does.
"""

import base64
import hmac
import json
import logging
import mimetypes
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

from providers.base import (
    STATE_BANNED,
    STATE_CONNECTED,
    STATE_CONNECTING,
    STATE_DISCONNECTED,
    STATE_LOGGED_OUT,
    STATE_WAITING_FOR_QR_SCAN,
    ConnectionUpdate,
    ConnectResult,
    HealthResult,
    InboundMessage,
    MediaPayload,
    ProviderAdapter,
    ProviderError,
    ProviderTarget,
    QrUpdate,
    SendResult,
    StatusUpdate,
    WebhookEvent,
    WebhookRejectedError,
    WebhookRequest,
    WebhookResult,
    health_measure,
)
from providers.http import provider_request, response_json

logger = logging.getLogger(__name__)

WEBHOOK_EVENTS = ("MESSAGES_UPSERT", "MESSAGES_UPDATE", "CONNECTION_UPDATE", "QRCODE_UPDATED", "SEND_MESSAGE")

# Baileys' WAConnectionState, plus `refused` when QRCODE_LIMIT is reached (providers.md 1.2).
_STATES = {
    "open": STATE_CONNECTED,
    "connecting": STATE_CONNECTING,
    "close": STATE_DISCONNECTED,
    "refused": STATE_DISCONNECTED,
}

# Evolution's message statuses (src/utils/renderStatus.ts); older servers send the numbers.
_STATUS_NAMES = {0: "ERROR", 1: "PENDING", 2: "SERVER_ACK", 3: "DELIVERY_ACK", 4: "READ", 5: "PLAYED"}
_DELIVERY_STATUSES = {
    "PENDING": "sent",
    "SERVER_ACK": "sent",
    "DELIVERY_ACK": "delivered",
    "READ": "read",
    "PLAYED": "read",  # a voice note was listened to: it was read
    "ERROR": "failed",
}

# Baileys' DisconnectReason, which Evolution forwards as connection.update `statusReason`.
_LOGGED_OUT = 401
_FORBIDDEN = 403  # WhatsApp refuses the account: banned
_DISCONNECT_REASONS = {
    401: "logged out from the phone",
    403: "WhatsApp refused the account (banned)",
    408: "connection lost",
    411: "multi-device mismatch",
    428: "connection closed",
    440: "replaced by another session",
    500: "bad session",
    503: "WhatsApp unavailable",
    515: "restart required",
}

_MEDIA_MESSAGES = {
    "imageMessage": "image",
    "videoMessage": "video",
    "audioMessage": "audio",
    "documentMessage": "document",
    "stickerMessage": "sticker",
}
# WhatsApp Status posts (status@broadcast), broadcast lists and channels are not conversations.
_IGNORED_CHAT_SUFFIXES = ("@broadcast", "@newsletter")
_WEBHOOK_ANSWER = b'{"received": true}'


class EvolutionAdapter(ProviderAdapter):
    name = "evolution"

    # --- instance lifecycle ------------------------------------------------------------------------
    def provision(self, target: ProviderTarget) -> ConnectResult:
        """Create the number's instance with its webhook pointing at us; return its first QR code.

        An instance of the same name is taken as ours from an earlier attempt whose answer was lost:
        its webhook is set again and a connection started. Raise ProviderError when Evolution refuses.
        """
        payload = {
            "instanceName": target.instance_name,
            # Without `integration` Evolution 2.x answers 400 "Invalid integration" (providers.md 1.2).
            "integration": "WHATSAPP-BAILEYS",
            "qrcode": True,
            "groupsIgnore": False,  # group chats are part of the inbox
            "webhook": _webhook_config(target),
        }
        try:
            body = _call(target, "POST", "/instance/create", action="create the instance", json=payload)
        except ProviderError as error:
            if not _is_name_in_use(error):
                raise
            _call(
                target,
                "POST",
                _instance_path("webhook/set", target),
                action="configure the webhook",
                json={"webhook": {"enabled": True, **_webhook_config(target)}},
            )
            return self.connect(target)
        # `qrcode` may be missing or only {"count": 0}: Baileys had no QR yet (issue #2385).
        return _connect_result(_as_dict(_as_dict(body).get("qrcode")))

    def connect(self, target: ProviderTarget, *, phone: str = "") -> ConnectResult:
        """Start (or resume) pairing: a QR code, or a pairing code for `phone`.

        Raise ProviderError when Evolution fails, including the failures it reports with HTTP 200.
        """
        params = {"number": _digits(phone)} if phone else None
        action = "start the connection"
        body = _as_dict(_call(target, "GET", _instance_path("instance/connect", target), action=action, params=params))
        _raise_error_in_body(body, action=action)
        return _connect_result(body)

    def connection_state(self, target: ProviderTarget) -> str:
        """Return the instance's normalized state (`connecting` even while a QR code is showing)."""
        action = "read the connection state"
        body = _as_dict(_call(target, "GET", _instance_path("instance/connectionState", target), action=action))
        state = _as_dict(body.get("instance")).get("state")
        return _STATES.get(state, STATE_DISCONNECTED)

    def logout(self, target: ProviderTarget) -> None:
        """Log the WhatsApp account out; an instance already logged out is left as it is."""
        try:
            _call(target, "DELETE", _instance_path("instance/logout", target), action="log out")
        except ProviderError as error:
            # Evolution refuses to log out a closed session with 400 "... is not connected"
            # (instance.controller.ts logout): the outcome we wanted is already there.
            if error.status_code == 400 and _mentions(error, "is not connected"):
                return
            raise

    def restart(self, target: ProviderTarget) -> None:
        """Restart the instance's session.

        Raise ProviderError (permanent) when the session is closed: only a new QR scan helps then.
        """
        action = "restart the instance"
        body = _as_dict(_call(target, "POST", _instance_path("instance/restart", target), action=action))
        _raise_error_in_body(body, action=action)

    def delete(self, target: ProviderTarget) -> None:
        """Delete the instance (Evolution logs it out first); an instance already gone is fine."""
        try:
            _call(target, "DELETE", _instance_path("instance/delete", target), action="delete the instance")
        except ProviderError as error:
            if error.status_code == 404 and _mentions(error, "does not exist"):
                return
            raise

    def health(self, target: ProviderTarget) -> HealthResult:
        """Check the server answers its welcome JSON on GET /; never raises."""

        def probe() -> str:
            body = response_json(provider_request(target, "GET", f"{target.base_url.rstrip('/')}/"))
            if not isinstance(body, dict) or body.get("status") != 200:
                return "The server answered, but not with Evolution's welcome message."
            return ""

        return health_measure(probe)

    # --- messages ----------------------------------------------------------------------------------
    def send_text(self, target: ProviderTarget, *, to: str, text: str, quoted_message_id: str = "") -> SendResult:
        """Send `text` to `to`; return the WhatsApp message id (`key.id`).

        Raise ProviderError (permanent, code not_on_whatsapp) when the number has no WhatsApp.
        """
        payload: dict = {"number": _recipient(to), "text": text}
        if quoted_message_id:
            # Evolution finds the quoted message by its key id in its own store.
            payload["quoted"] = {"key": {"id": quoted_message_id}}
        path = _instance_path("message/sendText", target)
        return _send_result(_call(target, "POST", path, action="send a text message", json=payload))

    def send_media(self, target: ProviderTarget, *, to: str, media: MediaPayload) -> SendResult:
        """Send an image, document, audio, video or sticker by URL or by its bytes.

        Raise ProviderError (permanent) when the media has neither, or the number has no WhatsApp.
        """
        source = _media_source(media)
        if media.kind == "sticker":
            payload = {"number": _recipient(to), "sticker": source}
            path = _instance_path("message/sendSticker", target)
        else:
            payload = {"number": _recipient(to), "mediatype": media.kind, "media": source, **_media_details(media)}
            path = _instance_path("message/sendMedia", target)
        return _send_result(_call(target, "POST", path, action=f"send a {media.kind}", json=payload))

    def mark_read(self, target: ProviderTarget, *, chat_id: str, provider_message_id: str) -> None:
        """Mark an inbound message as read.

        Evolution silently skips keys whose chat is an `@lid` (markMessageAsRead in the Baileys
        service), which is one more reason chat ids prefer the phone JID.
        """
        payload = {"readMessages": [{"remoteJid": _chat_jid(chat_id), "fromMe": False, "id": provider_message_id}]}
        path = _instance_path("chat/markMessageAsRead", target)
        body = _as_dict(_call(target, "POST", path, action="mark a message as read", json=payload))
        if body.get("read") != "success":
            raise ProviderError(
                f"Evolution did not confirm the read receipt for {target.instance_name}: {body!r:.200}",
                permanent=False,
            )

    # --- webhooks ----------------------------------------------------------------------------------
    def parse_webhook(self, target: ProviderTarget, request: WebhookRequest) -> WebhookResult:
        """Check the webhook carries our secret and names this instance; return its events.

        Raise WebhookRejectedError: 401 without credentials, 403 with wrong ones or another
        instance's events, 400 when the body cannot be read. Unknown events give no events.
        """
        _authenticate(target, request)
        envelope = _envelope_read(request.body)
        instance = envelope.get("instance")
        if instance != target.instance_name:
            raise WebhookRejectedError(f"This webhook is for instance {instance!r}, not this number's.", status=403)
        parser = _EVENT_PARSERS.get(_event_name(envelope.get("event")))
        events = parser(envelope) if parser else []
        return WebhookResult(events=events, instance_name=instance, response_body=_WEBHOOK_ANSWER)


# --- HTTP --------------------------------------------------------------------------------------------
def _instance_path(route: str, target: ProviderTarget) -> str:
    return f"/{route}/{quote(target.instance_name, safe='')}"


def _call(target: ProviderTarget, method: str, path: str, *, action: str, **kwargs) -> dict | list:
    """Call Evolution for `target`; return the JSON body.

    Raise ProviderError with Evolution's own error message, classified as provider_request does,
    except where Evolution's answer says more (a number without WhatsApp, a dropped session).
    """
    url = f"{target.base_url.rstrip('/')}{path}"
    try:
        response = provider_request(target, method, url, headers={"apikey": target.api_key}, **kwargs)
    except ProviderError as error:
        raise _error_explained(error, action=action, instance=target.instance_name) from error
    return response_json(response)


def _error_explained(error: ProviderError, *, action: str, instance: str) -> ProviderError:
    """Return `error` with a message a person can act on, and the classification Evolution implies."""
    messages = _error_messages(error.body)
    absent = [item.get("number") or item.get("jid") for item in messages if _is_not_on_whatsapp(item)]
    if absent:
        return ProviderError(
            f"{', '.join(str(number) for number in absent)} is not on WhatsApp.",
            permanent=True,
            status_code=error.status_code,
            code="not_on_whatsapp",
            body=error.body,
        )
    detail = "; ".join(_message_text(item) for item in messages) or error.message
    permanent, code = error.permanent, error.code
    if error.status_code == 401:
        code, detail = "unauthorized", f"{detail} (check the server's API key)"
    elif error.status_code == 404:
        code = "instance_not_found"
    if "connection closed" in detail.lower():
        # Sending while Baileys reconnects answers 400 "Error: Connection Closed" (issues #2229,
        # #1772): the session may come back, so the send is worth retrying.
        permanent, code = False, "connection_closed"
    status = f" (HTTP {error.status_code})" if error.status_code else ""
    return ProviderError(
        f"Evolution could not {action} for instance {instance}{status}: {detail}",
        permanent=permanent,
        retry_after=error.retry_after,
        status_code=error.status_code,
        code=code,
        circuit_open=error.circuit_open,
        body=error.body,
    )


def _error_messages(body: str) -> list:
    """Return the messages of Evolution's error envelope `{"status", "error", "response": {"message"}}`."""
    try:
        payload = json.loads(body) if body else None
    except ValueError:
        return []
    if not isinstance(payload, dict):
        return []
    response = payload.get("response")
    message = response.get("message") if isinstance(response, dict) else payload.get("message")
    return list(_flatten(message))


def _flatten(value):
    # Messages arrive as a string (401), a list (most errors) or a list of lists (JSON-schema errors).
    if isinstance(value, list):
        for item in value:
            yield from _flatten(item)
    elif value is not None:
        yield value


def _is_not_on_whatsapp(item) -> bool:
    # The onWhatsApp check before a send: [{"jid", "exists": false, "number"}] (providers.md 1.3).
    return isinstance(item, dict) and item.get("exists") is False


def _message_text(item) -> str:
    return item if isinstance(item, str) else json.dumps(item)


def _mentions(error: ProviderError, text: str) -> bool:
    return any(text in _message_text(item) for item in _error_messages(error.body))


def _is_name_in_use(error: ProviderError) -> bool:
    # The create guard answers 403 `This name "x" is already in use.` (src/api/guards/instance.guard.ts).
    return error.status_code == 403 and _mentions(error, "already in use")


def _raise_error_in_body(body: dict, *, action: str) -> None:
    """Raise ProviderError for the failures connect and restart report with HTTP 200.

    Raise ProviderError when `body` is `{"error": true, "message": ...}` (instance.controller.ts
    catches its own errors). Evolution's HTTP exceptions are thrown as plain objects, so their
    message arrives as "[object Object]": a refusal (say, restarting a closed session), which is
    permanent. A real Error ("Error: Connection Closed") is a runtime failure, worth retrying.
    """
    if body.get("error") is not True:
        return
    message = str(body.get("message") or "no message")
    refused = message == "[object Object]"
    hint = " (Evolution refused the request; is the session closed?)" if refused else ""
    raise ProviderError(
        f"Evolution could not {action}: {message}{hint}",
        permanent=refused,
        code="refused" if refused else "failed",
        body=json.dumps(body)[:1000],
    )


def _as_dict(value) -> dict:
    return value if isinstance(value, dict) else {}


# --- requests ----------------------------------------------------------------------------------------
def _webhook_config(target: ProviderTarget) -> dict:
    return {
        "url": target.webhook_url,
        "byEvents": False,
        "base64": True,  # media arrives inside the webhook: WhatsApp's own media URLs are encrypted
        "headers": {"authorization": f"Bearer {target.webhook_secret}"},
        "events": list(WEBHOOK_EVENTS),
    }


def _digits(text: str) -> str:
    return "".join(character for character in text if character.isdigit())


def _recipient(to: str) -> str:
    """Return Evolution's `number` for `to`: a JID as given (groups, @lid), else the bare digits.

    Raise ProviderError (permanent) when `to` has neither.
    """
    text = to.strip()
    if "@" in text:
        return text
    digits = _digits(text)
    if not digits:
        raise ProviderError(
            f"{to!r} is neither a phone number nor a WhatsApp id.", permanent=True, code="bad_recipient"
        )
    return digits


def _chat_jid(chat_id: str) -> str:
    return chat_id.strip() if "@" in chat_id else f"{_digits(chat_id)}@s.whatsapp.net"


def _media_source(media: MediaPayload) -> str:
    """Return the media's URL, or its bytes as raw base64 (Evolution rejects a data: URI)."""
    if media.url:
        return media.url
    if media.content:
        return base64.b64encode(media.content).decode()
    raise ProviderError("The media has neither a URL nor content to send.", permanent=True, code="no_media")


def _media_details(media: MediaPayload) -> dict:
    details = {}
    filename = media.filename or _filename_from_url(media.url)
    if media.kind == "document" and not filename:
        # A document sent as base64 needs a file name ("For base64 the file name must be informed.").
        filename = "document" + (mimetypes.guess_extension(media.mime_type or "") or "")
    if filename:
        details["fileName"] = filename
    mime_type = media.mime_type or mimetypes.guess_type(filename or "")[0]
    if mime_type:
        details["mimetype"] = mime_type
    if media.caption:
        details["caption"] = media.caption
    return details


def _filename_from_url(url: str) -> str:
    return urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1] if url else ""


def _send_result(body: dict | list) -> SendResult:
    """Return the SendResult for Evolution's stored message (`messageRaw`).

    Raise ProviderError (permanent) when it has no `key.id`: Evolution takes no idempotency key,
    so a retry could send the message twice.
    """
    key = _as_dict(_as_dict(body).get("key"))
    message_id = key.get("id")
    if not isinstance(message_id, str) or not message_id:
        raise ProviderError(
            f"Evolution answered the send without a message id: {json.dumps(body)[:200]}",
            permanent=True,
            code="no_message_id",
        )
    return SendResult(provider_message_id=message_id, recipient_id=str(key.get("remoteJid") or ""), raw=_as_dict(body))


def _connect_result(body: dict) -> ConnectResult:
    """Return the state and codes of a connect answer or of a create's `qrcode` block."""
    instance = body.get("instance")
    if isinstance(instance, dict) and instance.get("state"):
        # Already open: connect answers the connectionState shape instead of a QR.
        return ConnectResult(state=_STATES.get(instance["state"], STATE_DISCONNECTED))
    qr_image = _qr_data_uri(body.get("base64"))
    qr_code = str(body.get("code") or "")
    pairing_code = str(body.get("pairingCode") or "")
    if qr_image or qr_code or pairing_code:
        return ConnectResult(
            state=STATE_WAITING_FOR_QR_SCAN, qr_image=qr_image, qr_code=qr_code, pairing_code=pairing_code
        )
    # {"count": 0}: Baileys has no QR yet; it follows as a qrcode.updated webhook (issue #2385).
    return ConnectResult(state=STATE_CONNECTING)


def _qr_data_uri(value) -> str:
    # Evolution's QR `base64` is already a data URI; accept raw base64 from older servers too.
    if not isinstance(value, str) or not value:
        return ""
    return value if value.startswith("data:") else f"data:image/png;base64,{value}"


# --- webhooks ----------------------------------------------------------------------------------------
def _authenticate(target: ProviderTarget, request: WebhookRequest) -> None:
    """Raise WebhookRejectedError unless the request shows `Authorization: Bearer <webhook_secret>`."""
    if not target.webhook_secret:
        raise WebhookRejectedError("This number has no webhook secret, so no webhook can prove itself.", status=403)
    header = request.header("Authorization").strip()
    if not header:
        raise WebhookRejectedError("The webhook has no Authorization header.", status=401)
    scheme, _, token = header.partition(" ")
    is_bearer = scheme.lower() == "bearer"
    if not (is_bearer and hmac.compare_digest(token.strip().encode(), target.webhook_secret.encode())):
        raise WebhookRejectedError("The webhook's Authorization header is wrong.", status=403)


def _envelope_read(body: bytes) -> dict:
    try:
        envelope = json.loads(body)
    except ValueError as error:  # UnicodeDecodeError is a ValueError too
        raise WebhookRejectedError("The webhook body is not JSON.", status=400) from error
    if not isinstance(envelope, dict):
        raise WebhookRejectedError("The webhook body is not a JSON object.", status=400)
    return envelope


def _event_name(value) -> str:
    """Return the dotted event name: the payload says messages.upsert, configs MESSAGES_UPSERT."""
    if not isinstance(value, str) or not value:
        raise WebhookRejectedError("The webhook has no event name.", status=400)
    return value.strip().lower().replace("_", ".").replace("-", ".")


def _data_items(envelope: dict) -> list[dict]:
    data = envelope.get("data")
    items = data if isinstance(data, list) else [data]
    if not items or not all(isinstance(item, dict) for item in items):
        raise WebhookRejectedError(f"The {envelope.get('event')} webhook has no data object.", status=400)
    return items


def _messages_upserted(envelope: dict) -> list[WebhookEvent]:
    return [
        message
        for item in _data_items(envelope)
        if (message := _inbound_message(item, envelope, is_echo=False)) is not None
    ]


def _message_sent(envelope: dict) -> list[WebhookEvent]:
    # send.message echoes a message we sent through the API (the sendText answer's shape).
    return [
        message
        for item in _data_items(envelope)
        if (message := _inbound_message(item, envelope, is_echo=True)) is not None
    ]


def _inbound_message(data: dict, envelope: dict, *, is_echo: bool) -> InboundMessage | None:
    """Return the message in an upsert's `data`, or None for chats and types we do not keep.

    Raise WebhookRejectedError when it has no key id or chat.
    """
    key = data.get("key")
    if not isinstance(key, dict):
        raise WebhookRejectedError("The message has no key.", status=400)
    message_id, remote_jid = key.get("id"), key.get("remoteJid")
    if not (isinstance(message_id, str) and message_id and isinstance(remote_jid, str) and remote_jid):
        raise WebhookRejectedError("The message key has no id or remoteJid.", status=400)
    if remote_jid.endswith(_IGNORED_CHAT_SUFFIXES):
        return None
    message = data.get("message")
    content = _content(message) if isinstance(message, dict) else None
    if content is None:
        logger.debug("Evolution message %s of type %s skipped", message_id, data.get("messageType"))
        return None
    is_from_me = is_echo or key.get("fromMe") is True
    is_group = remote_jid.endswith("@g.us")
    # @lid chats (providers.md 1.7): the phone JID may sit in remoteJidAlt (2.3.3+), senderPn
    # (2.3.1-2.3.4, which moved the @lid to previousRemoteJid) or remoteJid itself.
    contact_ids = _best_first(key.get("remoteJidAlt"), key.get("senderPn"), remote_jid, key.get("previousRemoteJid"))
    if is_from_me:
        sender_ids = _best_first(envelope.get("sender"))  # the connected account
    elif is_group:
        sender_ids = _best_first(key.get("participantAlt"), key.get("participant"), data.get("participant"))
    else:
        sender_ids = contact_ids
    return InboundMessage(
        provider_message_id=message_id,
        chat_id=remote_jid if is_group else contact_ids[0],
        sender_ids=sender_ids,
        timestamp=_timestamp(data.get("messageTimestamp")),
        sender_name=str(data.get("pushName") or ""),
        from_me=is_from_me,
        is_group=is_group,
        quoted_message_id=_quoted_id(data, message),
        raw=data,
        **content,
    )


def _best_first(*ids) -> tuple[str, ...]:
    """Return the distinct ids, phone JIDs before @lid ones: replies to an @lid often fail (#1872)."""
    distinct = list(dict.fromkeys(value for value in ids if isinstance(value, str) and value))
    return tuple(sorted(distinct, key=lambda value: value.endswith("@lid")))


def _content(message: dict) -> dict | None:
    """Return the InboundMessage fields for a WhatsApp `message` object, or None for other types."""
    wrapped = _as_dict(_as_dict(message.get("documentWithCaptionMessage")).get("message"))
    for name, kind in _MEDIA_MESSAGES.items():
        media = message.get(name) or wrapped.get(name)
        if isinstance(media, dict):
            return _media_content(kind, media, message)
    location = message.get("locationMessage")
    if isinstance(location, dict):
        return {
            "type": "location",
            "latitude": float(location.get("degreesLatitude") or 0),
            "longitude": float(location.get("degreesLongitude") or 0),
            "text": ", ".join(str(part) for part in (location.get("name"), location.get("address")) if part),
        }
    if isinstance(message.get("conversation"), str):
        return {"type": "text", "text": message["conversation"]}
    # Before 2.2.0, text with a link, quote or mention came as extendedTextMessage (providers.md 1.6).
    extended = message.get("extendedTextMessage")
    if isinstance(extended, dict) and isinstance(extended.get("text"), str):
        return {"type": "text", "text": extended["text"]}
    return None


def _media_content(kind: str, media: dict, message: dict) -> dict:
    media_base64 = message.get("base64")
    if isinstance(media_base64, str) and media_base64.startswith("data:"):
        media_base64 = media_base64.partition(",")[2]
    # message.base64 (webhook base64: true) holds the file itself. mediaUrl is Evolution's S3 copy.
    # The WhatsApp CDN url is encrypted (it needs mediaKey), so it is only a last resort.
    media_url = message.get("mediaUrl") or ("" if media_base64 else media.get("url"))
    return {
        "type": kind,
        "text": str(media.get("caption") or ""),
        "media_base64": media_base64 if isinstance(media_base64, str) else "",
        "media_url": str(media_url or ""),
        "media_mime_type": str(media.get("mimetype") or ""),
        "media_filename": str(media.get("fileName") or ""),
    }


def _quoted_id(data: dict, message) -> str:
    # 2.x lifts contextInfo to data.contextInfo; older servers leave it inside the typed message.
    contexts = [data.get("contextInfo")]
    if isinstance(message, dict):
        contexts += [value.get("contextInfo") for value in message.values() if isinstance(value, dict)]
    for context in contexts:
        stanza_id = _as_dict(context).get("stanzaId")
        if isinstance(stanza_id, str) and stanza_id:
            return stanza_id
    return ""


def _timestamp(value) -> datetime:
    """Return WhatsApp's time for a message: epoch seconds, or a protobuf Long {low, high, unsigned}.

    Raise WebhookRejectedError when it is neither. A message without one is stamped now.
    """
    if value is None or value == "":
        return datetime.now(UTC)
    try:
        if isinstance(value, dict):
            # Older servers leaked Long objects (providers.md 1.7); low is a signed 32-bit half.
            seconds = (int(value.get("high") or 0) << 32) + (int(value.get("low") or 0) & 0xFFFFFFFF)
        elif isinstance(value, bool):
            raise TypeError("a boolean is not a timestamp")
        else:
            seconds = int(float(value))
        if seconds > 10**11:  # milliseconds (v1's `datetime`)
            seconds //= 1000
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError) as error:
        raise WebhookRejectedError(f"Unreadable timestamp {value!r}.", status=400) from error


def _messages_updated(envelope: dict) -> list[WebhookEvent]:
    return [update for item in _data_items(envelope) if (update := _status_update(item)) is not None]


def _status_update(data: dict) -> StatusUpdate | None:
    """Return the delivery status in a messages.update, or None for updates that are not one.

    Raise WebhookRejectedError when it names no message.
    """
    if str(data.get("remoteJid") or "").endswith(_IGNORED_CHAT_SUFFIXES):
        return None
    if data.get("fromMe") is False:
        return None  # a receipt for a message the contact sent us (we read it): not our delivery
    status_name = data.get("status")
    if isinstance(status_name, int):
        status_name = _STATUS_NAMES.get(status_name)
    status = _DELIVERY_STATUSES.get(status_name)
    if status is None:
        return None  # DELETED, or a status this adapter does not know
    # 2.x names the message keyId; 1.x `id`, with `datetime` in milliseconds.
    message_id = data.get("keyId") or data.get("id") or _as_dict(data.get("key")).get("id")
    if not isinstance(message_id, str) or not message_id:
        raise WebhookRejectedError("The status update names no message.", status=400)
    is_failed = status == "failed"
    return StatusUpdate(
        provider_message_id=message_id,
        status=status,
        # 2.x updates carry no time of their own (date_time is local time mislabelled as UTC).
        timestamp=_timestamp(data.get("datetime")),
        error_code="ERROR" if is_failed else "",
        error_message="WhatsApp reported the message as not sent (status ERROR)." if is_failed else "",
    )


def _connection_updated(envelope: dict) -> list[WebhookEvent]:
    data = _data_items(envelope)[0]
    state = data.get("state")
    reason_code = _int_or_none(data.get("statusReason"))
    if state == "open":
        return [ConnectionUpdate(state=STATE_CONNECTED, phone=_phone_from_jid(data.get("wuid")))]
    if state == "connecting":
        return [ConnectionUpdate(state=STATE_CONNECTING, reason=_reason(reason_code))]
    if state == "refused":
        return [ConnectionUpdate(state=STATE_DISCONNECTED, reason="QR code limit reached; ask for a new QR code")]
    if state == "close":
        normalized = {_LOGGED_OUT: STATE_LOGGED_OUT, _FORBIDDEN: STATE_BANNED}.get(reason_code, STATE_DISCONNECTED)
        return [ConnectionUpdate(state=normalized, reason=_reason(reason_code))]
    return []


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _reason(code: int | None) -> str:
    if code is None or code == 200:
        return ""
    return f"{code} {_DISCONNECT_REASONS.get(code, 'disconnected')}"


def _phone_from_jid(jid) -> str:
    """Return `5511987654321:12@s.whatsapp.net` as +5511987654321 ("" when it is not a phone JID)."""
    if not isinstance(jid, str) or not jid.endswith("@s.whatsapp.net"):
        return ""
    digits = jid.split("@")[0].split(":")[0]
    return f"+{digits}" if digits.isdigit() else ""


def _qr_updated(envelope: dict) -> list[WebhookEvent]:
    qrcode = _data_items(envelope)[0].get("qrcode")
    if not isinstance(qrcode, dict):
        # At QRCODE_LIMIT the data is {"message", "statusCode"}; a connection.update `refused` follows.
        return []
    qr_image = _qr_data_uri(qrcode.get("base64"))
    qr_code = str(qrcode.get("code") or "")
    pairing_code = str(qrcode.get("pairingCode") or "")
    if not (qr_image or qr_code or pairing_code):
        return []
    return [QrUpdate(qr_image=qr_image, qr_code=qr_code, pairing_code=pairing_code)]


_EVENT_PARSERS = {
    "messages.upsert": _messages_upserted,
    "send.message": _message_sent,
    "messages.update": _messages_updated,
    "connection.update": _connection_updated,
    "qrcode.updated": _qr_updated,
}
