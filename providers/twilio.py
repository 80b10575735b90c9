"""Twilio WhatsApp (Programmable Messaging): sends through the Messages API, webhooks signed with the auth token.

Twilio has no instance, session or QR code: a WhatsApp sender is approved once on a Twilio account
and works for as long as the account is active. So "connecting" a number means checking that its
credentials open the account, the connection state is the account's status, and logout, restart
and delete have nothing on Twilio to act on (each says so in the log).

`target.credentials`:
- `account_sid`: the account (`AC...`), the user name of HTTP Basic auth and part of every API path;
- `auth_token`: the password of HTTP Basic auth, and the key Twilio signs its webhooks with;
- `from_number`: our WhatsApp sender in E.164 (`+15550100200`).

Statuses come back to `target.webhook_url`, which every send passes as the message's StatusCallback.
Inbound messages go to the URL set on the WhatsApp sender in Twilio's console: set it to the same
per-number URL. Twilio cannot be given our `webhook_secret`; its proof is X-Twilio-Signature.
"""

import base64
import hashlib
import hmac
import json
import logging
from urllib.parse import parse_qs, urlsplit

from django.utils import timezone

from providers.base import (
    STATE_BANNED,
    STATE_CONNECTED,
    STATE_DISCONNECTED,
    STATE_LOGGED_OUT,
    ConnectResult,
    HealthResult,
    InboundMessage,
    MediaPayload,
    ProviderAdapter,
    ProviderError,
    ProviderTarget,
    SendResult,
    StatusUpdate,
    WebhookRejectedError,
    WebhookRequest,
    WebhookResult,
    health_measure,
)
from providers.http import provider_request, response_json

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.twilio.com"
API_VERSION = "2010-04-01"
WHATSAPP_PREFIX = "whatsapp:"
SIGNATURE_HEADER = "X-Twilio-Signature"
# Twilio answers every messaging webhook with TwiML; an empty <Response/> means "send no reply".
EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'
TWIML_CONTENT_TYPE = "text/xml"
_DEFAULT_PORTS = {"https": 443, "http": 80}

# Account resource `status` (providers.md §4): only an active account can send.
_ACCOUNT_STATES = {"active": STATE_CONNECTED, "suspended": STATE_BANNED, "closed": STATE_LOGGED_OUT}

# MessageStatus of a status callback (providers.md §4.3). queued, accepted, sending and scheduled are
# steps before WhatsApp has the message: nothing to report yet.
_DELIVERY_STATUSES = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "failed": "failed",
    "undelivered": "failed",
    "canceled": "failed",  # a scheduled message canceled before sending: it will never arrive
}
_RECEIVED_STATUS = "received"

# Errors a later retry can cure, when Twilio reports them in a body rather than by HTTP status.
_TEMPORARY_ERROR_CODES = frozenset({"20429", "20500", "20503"})

# What Twilio's error codes mean for an agent (twilio.com/docs/errors/<code>).
_ERROR_EXPLANATIONS = {
    "20003": "Twilio rejected the account SID or auth token",
    "20404": "Twilio has no such resource on this account",
    "20429": "Twilio is rate limiting this account",
    "21211": "the recipient is not a valid phone number",
    "21614": "the recipient is not a mobile number",
    "21910": "the From and To addresses are not on the same channel",
    "30008": "the message could not be delivered for an unknown reason",
    "63003": "the recipient is not on WhatsApp",
    "63007": "the From number is not a WhatsApp sender on this Twilio account",
    "63016": "outside the 24-hour customer service window: only an approved template can be sent",
    "63018": "the WhatsApp rate limit of this sender was exceeded",
    "63024": "WhatsApp rejected the recipient",
    "63049": "Meta chose not to deliver this marketing message",
}

# MessageType of an inbound WhatsApp message, onto ours; button and list replies are text.
_MESSAGE_TYPES = {
    "text": "text",
    "image": "image",
    "video": "video",
    "audio": "audio",
    "document": "document",
    "location": "location",
    "sticker": "sticker",
    "button": "text",
    "interactive": "text",
}


class TwilioAdapter(ProviderAdapter):
    name = "twilio"

    # --- connection ------------------------------------------------------------------------------
    def provision(self, target: ProviderTarget) -> ConnectResult:
        """Check the credentials open the Twilio account; Twilio has no instance to create.

        The WhatsApp sender is registered with Meta through Twilio's console, not this API.
        Raise ProviderError when the credentials are wrong (permanent) or Twilio is unreachable.
        """
        return ConnectResult(state=self.connection_state(target))

    def connect(self, target: ProviderTarget, *, phone: str = "") -> ConnectResult:
        """Return the account's state; Twilio has no QR code or pairing code (`phone` is unused).

        Raise ProviderError when the credentials are wrong (permanent) or Twilio is unreachable.
        """
        return ConnectResult(state=self.connection_state(target))

    def connection_state(self, target: ProviderTarget) -> str:
        """Return the state of the Twilio account: active is connected, suspended banned, closed logged out.

        Raise ProviderError when the credentials are wrong (permanent) or Twilio is unreachable.
        """
        account = self._api_call(target, "GET", ".json")
        return _ACCOUNT_STATES.get(str(account.get("status", "")), STATE_DISCONNECTED)

    def health(self, target: ProviderTarget) -> HealthResult:
        """Fetch the account and time it; healthy when Twilio answers and the account is active."""

        def probe() -> str:
            state = self.connection_state(target)
            return "" if state == STATE_CONNECTED else f"Twilio account is {state}"

        return health_measure(probe)

    def logout(self, target: ProviderTarget) -> None:
        """Do nothing: a Twilio sender has no WhatsApp session to log out of."""
        logger.info("twilio: logout of %s is a no-op; Twilio keeps no WhatsApp session", target.instance_name)

    def restart(self, target: ProviderTarget) -> None:
        """Do nothing: Twilio runs no instance of ours that could be restarted."""
        logger.info("twilio: restart of %s is a no-op; Twilio runs no instance", target.instance_name)

    def delete(self, target: ProviderTarget) -> None:
        """Do nothing: the sender belongs to the Twilio account; remove it in Twilio's console."""
        logger.info("twilio: delete of %s is a no-op; the sender stays on the Twilio account", target.instance_name)

    # --- messages --------------------------------------------------------------------------------
    def send_text(self, target: ProviderTarget, *, to: str, text: str, quoted_message_id: str = "") -> SendResult:
        """Send `text` to `to`; Twilio's Messages API cannot quote, so `quoted_message_id` is unused.

        Raise ProviderError: permanent for a bad number or credentials, temporary for 5xx, 429, timeouts.
        """
        return self._message_create(target, to=to, fields=[("Body", text)])

    def send_media(self, target: ProviderTarget, *, to: str, media: MediaPayload) -> SendResult:
        """Send media by its public URL, with its caption as the body.

        Raise ProviderError (permanent) when the media comes as bytes: Twilio only fetches media by
        URL, so the caller must publish the file first. Otherwise as send_text.
        """
        if not media.url:
            raise ProviderError(
                "Twilio only sends media it can fetch from a public URL; uploaded bytes are not supported.",
                permanent=True,
                code="media_url_required",
            )
        fields = [("MediaUrl", media.url)]
        if media.caption:
            fields.insert(0, ("Body", media.caption))
        return self._message_create(target, to=to, fields=fields)

    def mark_read(self, target: ProviderTarget, *, chat_id: str, provider_message_id: str) -> None:
        """Do nothing: Twilio's Messages API (providers.md §4) has no call to mark an inbound message read."""
        # Debug, not info: inboxes mark chats read all day long, and there is nothing to act on.
        logger.debug("twilio: mark_read on %s is a no-op; Twilio cannot send read receipts", target.instance_name)

    def _message_create(self, target: ProviderTarget, *, to: str, fields: list[tuple[str, str]]) -> SendResult:
        form = [
            ("To", _whatsapp_address(to)),
            ("From", _whatsapp_address(_credential(target, "from_number"))),
            *fields,
        ]
        if target.webhook_url:
            form.append(("StatusCallback", target.webhook_url))
        message = self._api_call(target, "POST", "/Messages.json", data=form)
        sid = message.get("sid")
        if not sid:
            raise _error_from_body(message)
        if message.get("status") in {"failed", "undelivered"}:
            code = str(message.get("error_code") or "")
            raise ProviderError(
                f"Twilio failed the message at once: {_error_explanation(code, message.get('error_message'))}",
                permanent=True,
                code=code or None,
                body=json.dumps(message),
            )
        return SendResult(
            provider_message_id=sid, recipient_id=_without_prefix(str(message.get("to", ""))), raw=message
        )

    # --- HTTP ------------------------------------------------------------------------------------
    def _api_call(self, target: ProviderTarget, method: str, path: str, **kwargs) -> dict:
        account_sid = _credential(target, "account_sid")
        auth_token = _credential(target, "auth_token")
        url = f"{target.base_url.rstrip('/') or DEFAULT_BASE_URL}/{API_VERSION}/Accounts/{account_sid}{path}"
        try:
            response = provider_request(target, method, url, auth=(account_sid, auth_token), **kwargs)
        except ProviderError as error:
            raise _error_restated(error) from error
        payload = response_json(response)
        if not isinstance(payload, dict):
            raise ProviderError(f"Twilio answered {method} {path} with an unexpected body", permanent=False)
        return payload

    # --- webhooks --------------------------------------------------------------------------------
    def parse_webhook(self, target: ProviderTarget, request: WebhookRequest) -> WebhookResult:
        """Verify X-Twilio-Signature, then read an inbound message or a status callback.

        Raise WebhookRejectedError: 401 without a signature, 400 for a body that is not a form or
        misses the fields its kind needs, 403 for a signature that does not match.
        """
        signature = request.header(SIGNATURE_HEADER)
        if not signature:
            raise WebhookRejectedError(f"Missing {SIGNATURE_HEADER} header.", status=401)
        # Twilio signs POST form fields; for GET they are already in the signed URL (providers.md §4.4).
        form = _form_parse(request.body) if request.method.upper() == "POST" else {}
        if not _signature_is_valid(target.credentials.get("auth_token", ""), request.url, form, signature):
            raise WebhookRejectedError(f"{SIGNATURE_HEADER} does not match this number's auth token.", status=403)
        return WebhookResult(
            events=_events_from_form(form),
            instance_name=target.instance_name,
            response_body=EMPTY_TWIML,
            response_content_type=TWIML_CONTENT_TYPE,
        )


def twilio_signature(auth_token: str, url: str, form: dict[str, list[str]]) -> str:
    """Return the X-Twilio-Signature Twilio would send for `form` posted to `url`.

    base64(HMAC-SHA1(auth_token, url + every key and value, keys sorted, values sorted)), as in
    twilio-python's request_validator.py (providers.md §4.4).
    """
    signed = url + "".join(key + value for key in sorted(form) for value in sorted(form[key]))
    digest = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _signature_is_valid(auth_token: str, url: str, form: dict[str, list[str]], signature: str) -> bool:
    if not auth_token:
        return False
    received = signature.strip().encode()
    return any(
        hmac.compare_digest(twilio_signature(auth_token, candidate, form).encode(), received)
        for candidate in _signed_url_candidates(url)
    )


def _signed_url_candidates(url: str) -> list[str]:
    # Twilio signs the URL as it dialled it, but is inconsistent about the default port
    # (443/80); its own validator accepts both spellings (request_validator.py, providers.md §4.4).
    parts = urlsplit(url)
    default_port = _DEFAULT_PORTS.get(parts.scheme)
    try:
        port = parts.port
    except ValueError:
        return [url]
    if default_port is None or not parts.hostname:
        return [url]
    if port is None:
        return [url, parts._replace(netloc=f"{parts.netloc}:{default_port}").geturl()]
    if port == default_port:
        return [url, parts._replace(netloc=parts.netloc.rsplit(":", 1)[0]).geturl()]
    return [url]


def _form_parse(body: bytes) -> dict[str, list[str]]:
    """Return the form fields of a webhook body, every value kept (Twilio signs them all).

    Raise WebhookRejectedError (400) when the body is not UTF-8 form encoding.
    """
    try:
        text = body.decode("utf-8")
        # Empty segments ("a=1&&b=2") carry no field; strict parsing catches anything else that is not one.
        text = "&".join(part for part in text.split("&") if part)
        return parse_qs(text, keep_blank_values=True, strict_parsing=True, errors="strict")
    except ValueError as error:  # UnicodeDecodeError is a ValueError
        raise WebhookRejectedError("Body is not a UTF-8 form.", status=400) from error


def _events_from_form(form: dict[str, list[str]]) -> list:
    fields = {key: values[0] for key, values in form.items()}
    message_status = fields.get("MessageStatus", "")
    status = message_status or fields.get("SmsStatus", "")
    if status == _RECEIVED_STATUS or (not message_status and _carries_message(fields)):
        inbound = _inbound_message(fields, form)
        return [inbound] if inbound else []
    if message_status:
        update = _status_update(fields)
        return [update] if update else []
    # Anything else (a voice call, a Conversations event) posted to this URL is not ours to read.
    return []


def _carries_message(fields: dict[str, str]) -> bool:
    return "MessageSid" in fields and ("Body" in fields or "NumMedia" in fields)


def _status_update(fields: dict[str, str]) -> StatusUpdate | None:
    status = _DELIVERY_STATUSES.get(fields["MessageStatus"])
    if status is None:
        return None
    error_code = fields.get("ErrorCode", "")
    error_message = ""
    if status == "failed":
        error_message = _error_explanation(error_code, fields.get("ErrorMessage"))
    return StatusUpdate(
        provider_message_id=_required(fields, "MessageSid"),
        status=status,
        # Status callbacks carry no time of their own (providers.md §6): receipt time is the best we have.
        timestamp=timezone.now(),
        error_code=error_code,
        error_message=error_message,
    )


def _inbound_message(fields: dict[str, str], form: dict[str, list[str]]) -> InboundMessage | None:
    media = _media_items(fields)
    latitude, longitude = _coordinates(fields)
    text = fields.get("Body") or fields.get("ButtonText") or _place_name(fields)
    if not (text or media or latitude is not None):
        return None  # a reaction or an unsupported type: nothing to show
    chat_id = _without_prefix(_required(fields, "From"))
    wa_id = fields.get("WaId", "")
    sender_ids = tuple(dict.fromkeys(identity for identity in (chat_id, f"+{wa_id}" if wa_id else "") if identity))
    first_url, first_mime_type = media[0] if media else ("", "")
    raw = {key: values if len(values) > 1 else values[0] for key, values in form.items()}
    raw["media"] = [{"url": url, "content_type": mime_type} for url, mime_type in media]
    return InboundMessage(
        provider_message_id=fields.get("MessageSid") or _required(fields, "SmsMessageSid"),
        chat_id=chat_id,
        sender_ids=sender_ids,
        # Twilio's inbound webhook has no timestamp field (providers.md §4.2): use receipt time.
        timestamp=timezone.now(),
        type=_message_type(fields.get("MessageType", ""), first_mime_type, latitude is not None),
        text=text,
        sender_name=fields.get("ProfileName", ""),
        media_url=first_url,
        media_mime_type=first_mime_type,
        latitude=latitude,
        longitude=longitude,
        quoted_message_id=fields.get("OriginalRepliedMessageSid", ""),
        raw=raw,
    )


def _media_items(fields: dict[str, str]) -> list[tuple[str, str]]:
    try:
        count = int(fields.get("NumMedia") or 0)
    except ValueError as error:
        raise WebhookRejectedError("NumMedia is not a number.", status=400) from error
    return [
        (fields[f"MediaUrl{index}"], fields.get(f"MediaContentType{index}", ""))
        for index in range(count)
        if fields.get(f"MediaUrl{index}")
    ]


def _coordinates(fields: dict[str, str]) -> tuple[float | None, float | None]:
    if not (fields.get("Latitude") or fields.get("Longitude")):
        return None, None
    try:
        return float(fields["Latitude"]), float(fields["Longitude"])
    except (KeyError, ValueError) as error:
        raise WebhookRejectedError("A location needs numeric Latitude and Longitude.", status=400) from error


def _place_name(fields: dict[str, str]) -> str:
    return "\n".join(part for part in (fields.get("Label", ""), fields.get("Address", "")) if part)


def _message_type(twilio_type: str, mime_type: str, has_location: bool) -> str:
    if twilio_type in _MESSAGE_TYPES:
        return _MESSAGE_TYPES[twilio_type]
    # Older webhooks, and SMS-style payloads, carry no MessageType: infer it from what came.
    if has_location:
        return "location"
    if mime_type:
        kind = mime_type.split("/", 1)[0]
        return kind if kind in {"image", "audio", "video"} else "document"
    return "text"


def _required(fields: dict[str, str], name: str) -> str:
    value = fields.get(name, "")
    if not value:
        raise WebhookRejectedError(f"The webhook has no {name}.", status=400)
    return value


# --- addresses, credentials and errors ---------------------------------------------------------
def _whatsapp_address(number: str) -> str:
    """Return `number` (E.164, bare digits, or already `whatsapp:+...`) as Twilio's WhatsApp address.

    Raise ProviderError (permanent) when it is not a phone number.
    """
    digits = _without_prefix(number).replace(" ", "").replace("-", "").removeprefix("+")
    if not digits.isdigit():
        raise ProviderError(f"{number!r} is not a phone number Twilio can send WhatsApp to.", permanent=True)
    return f"{WHATSAPP_PREFIX}+{digits}"


def _without_prefix(address: str) -> str:
    text = address.strip()
    return text[len(WHATSAPP_PREFIX) :] if text.lower().startswith(WHATSAPP_PREFIX) else text


def _credential(target: ProviderTarget, name: str) -> str:
    value = str(target.credentials.get(name) or "")
    if not value:
        raise ProviderError(f"The Twilio credentials of {target.instance_name} lack {name}.", permanent=True)
    return value


def _error_explanation(code: str, twilio_message: object = "") -> str:
    parts = [str(twilio_message or "") or _ERROR_EXPLANATIONS.get(code, "")]
    if code:
        parts.append(f"(Twilio error {code}, https://www.twilio.com/docs/errors/{code})")
    return " ".join(part for part in parts if part) or "Twilio gave no reason"


def _error_details(body: str) -> dict:
    try:
        payload = json.loads(body or "null")
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) and "code" in payload else {}


def _error_restated(error: ProviderError) -> ProviderError:
    """Return `error` in Twilio's words (its code and message) when its body is a Twilio error."""
    details = _error_details(error.body)
    if not details:
        return error
    code = str(details.get("code") or "")
    explanation = _ERROR_EXPLANATIONS.get(code, "")
    message = f"Twilio answered {error.status_code}: {_error_explanation(code, details.get('message'))}"
    if explanation and explanation not in message:
        message += f"; {explanation}"
    return ProviderError(
        message,
        permanent=error.permanent,
        retry_after=error.retry_after,
        status_code=error.status_code,
        code=code or None,
        body=error.body,
    )


def _error_from_body(payload: dict) -> ProviderError:
    # Twilio reports errors by HTTP status, but a success status without a message sid is no success.
    code = str(payload.get("code") or "")
    if not code:
        return ProviderError("Twilio answered without a message sid.", permanent=False, body=json.dumps(payload))
    return ProviderError(
        f"Twilio refused the message: {_error_explanation(code, payload.get('message'))}",
        permanent=code not in _TEMPORARY_ERROR_CODES,
        code=code,
        body=json.dumps(payload),
    )
