"""A fake Twilio: the Accounts and Messages API for WhatsApp, and its signed form webhooks.

It speaks Twilio's contract (providers.md §4): HTTP Basic auth with the account SID and auth token
(anything else: 401 with code 20003), form-encoded POSTs, 201 with Twilio's message shape (counts as
strings, RFC 2822 dates, status `queued`), errors as {code, message, more_info, status}. Every
webhook is a form POST signed with X-Twilio-Signature over the exact URL called.

After a send with a StatusCallback it calls back `sent`, `delivered`, then `read`, one every
`status_delay_seconds`. Recipients ending:
- 0000 are not valid numbers: 400 with code 21211, nothing sent;
- 3016 are outside the 24 h customer service window: 201, then a `failed` callback with 63016;
- 3003 are not on WhatsApp: 201, then an `undelivered` callback with 63003.

Options (keywords, or `--set key=value`): account_sid, auth_token, webhook_url (the sender's inbound
URL, as set in Twilio's console), sender_number (our WhatsApp number inbound messages go to),
account_status (active|suspended|closed), status_delay_seconds, webhook_delay_seconds.

Control routes, besides the base class's /_fake/faults and /_fake/state:
- POST /_fake/inbound {"kind": "text|image|audio|video|document|location|button", "from": "+55...",
  "text", "profile_name", "media_url", "media_content_type", "latitude", "longitude", "address",
  "label", "button_text", "button_payload", "replied_to", "webhook_url"}: an inbound message;
- POST /_fake/status {"sid": "SM...", "statuses": ["read", "delivered"], "error_code": ""}: status
  callbacks for a sent message, in that order (out of order on purpose, if you like);
- POST /_fake/account {"status": "suspended"}: the account's status.
"""

import base64
import hashlib
import hmac
import threading
import time
import uuid
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import urlencode

from providers.fakes.qr import qr_png_base64
from providers.fakes.server import FakeProviderServer, FakeRequest, FakeResponse

API_VERSION = "2010-04-01"
DEFAULT_ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
DEFAULT_AUTH_TOKEN = "fake-twilio-auth-token"  # noqa: S105 (the fake's own, for development)
DEFAULT_SENDER_NUMBER = "+15550100200"
INVALID_NUMBER_SUFFIX = "0000"
OUTSIDE_WINDOW_SUFFIX = "3016"
NOT_ON_WHATSAPP_SUFFIX = "3003"
WHATSAPP_PREFIX = "whatsapp:"
EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'

# Twilio's error codes for the HTTP statuses the fake answers (twilio.com/docs/errors/<code>).
_ERRORS_BY_STATUS = {
    400: (20001, "Bad request"),
    401: (20003, "Authenticate"),
    403: (20403, "Forbidden"),
    404: (20404, "The requested resource was not found"),
    405: (20004, "Method not allowed"),
    429: (20429, "Too Many Requests"),
    500: (20500, "Internal Server Error"),
    503: (20503, "Service Unavailable"),
}
_MEDIA_CONTENT_TYPES = {
    "image": "image/jpeg",
    "audio": "audio/ogg",
    "video": "video/mp4",
    "document": "application/pdf",
}


def twilio_signature(auth_token: str, url: str, fields: list[tuple[str, str]]) -> str:
    """Return X-Twilio-Signature: base64 HMAC-SHA1 of the URL then each key+value, keys and values sorted."""
    values_by_key: dict[str, list[str]] = {}
    for key, value in fields:
        values_by_key.setdefault(key, []).append(value)
    signed = url
    for key in sorted(values_by_key):
        for value in sorted(values_by_key[key]):
            signed += key + value
    return base64.b64encode(hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()).decode()


def twilio_error_body(status: int, code: int, message: str) -> dict:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def _rfc2822_now() -> str:
    return format_datetime(datetime.now(UTC))


def _new_sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


class FakeTwilioServer(FakeProviderServer):
    """Twilio's Messages API for one account, with signed status and inbound webhooks."""

    provider_name = "twilio"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        webhook_url: str = "",
        sender_number: str = DEFAULT_SENDER_NUMBER,
        account_status: str = "active",
        status_delay_seconds: float | str = 0.1,
        webhook_delay_seconds: float | str = 0.05,
    ):
        super().__init__(host=host, port=int(port), webhook_delay_seconds=float(webhook_delay_seconds))
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.webhook_url = webhook_url
        self.sender_number = sender_number
        self.account_status = account_status
        self.status_delay_seconds = float(status_delay_seconds)
        self.channel_install_sid = "XE" + uuid.uuid4().hex
        self.messages: dict[str, dict] = {}  # by sid: every message the fake sent, as the API shows it
        self.media: dict[str, tuple[bytes, str]] = {}  # by media sid: inbound media served back
        self.status_callbacks: dict[str, str] = {}  # by message sid: the StatusCallback it was sent with
        account_path = r"/2010-04-01/Accounts/(?P<account_sid>[^/]+)"
        self.route("GET", account_path + r"\.json", self._account_fetch)
        self.route("POST", account_path + r"/Messages\.json", self._message_create)
        self.route("GET", account_path + r"/Messages/(?P<message_sid>[^/]+)\.json", self._message_fetch)
        self.route(
            "GET", account_path + r"/Messages/(?P<message_sid>[^/]+)/Media/(?P<media_sid>[^/.]+)", self._media_get
        )
        self.route("POST", r"/_fake/inbound", self._inbound_route)
        self.route("POST", r"/_fake/status", self._status_route)
        self.route("POST", r"/_fake/account", self._account_route)

    # --- errors ----------------------------------------------------------------------------------
    def error_response(self, status: int) -> FakeResponse:
        code, message = _ERRORS_BY_STATUS.get(status, (20500 if status >= 500 else 20001, "Error"))
        return self._error(status, code, message)

    def not_found(self, request: FakeRequest) -> FakeResponse:
        return self._error(404, 20404, f"The requested resource {request.path} was not found")

    def _error(self, status: int, code: int, message: str) -> FakeResponse:
        headers = {"WWW-Authenticate": 'Basic realm="Twilio API"'} if status == 401 else {}
        return FakeResponse.json(status, twilio_error_body(status, code, message), headers)

    def _auth_failure(self, request: FakeRequest) -> FakeResponse | None:
        """Return Twilio's answer to wrong credentials or another account's path, or None when they fit."""
        expected = f"{self.account_sid}:{self.auth_token}".encode()
        header = request.header("Authorization")
        given = b""
        if header.startswith("Basic "):
            try:
                given = base64.b64decode(header.removeprefix("Basic ").strip(), validate=True)
            except ValueError:
                given = b""
        if not hmac.compare_digest(given, expected):
            return self._error(401, 20003, "Authenticate")
        if request.params.get("account_sid") != self.account_sid:
            return self.not_found(request)
        return None

    # --- the API ---------------------------------------------------------------------------------
    def _account_fetch(self, request: FakeRequest) -> FakeResponse:
        failure = self._auth_failure(request)
        if failure:
            return failure
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}"
        return FakeResponse.json(
            200,
            {
                # The real resource carries the auth token too: adapters must not leak this body.
                "auth_token": self.auth_token,
                "date_created": "Mon, 10 Mar 2025 14:22:05 +0000",
                "date_updated": _rfc2822_now(),
                "friendly_name": "Conversa fake account",
                "owner_account_sid": self.account_sid,
                "sid": self.account_sid,
                "status": self.account_status,
                "subresource_uris": {"messages": f"{uri}/Messages.json"},
                "type": "Full",
                "uri": f"{uri}.json",
            },
        )

    def _message_create(self, request: FakeRequest) -> FakeResponse:
        failure = self._auth_failure(request)
        if failure:
            return failure
        form = request.form()
        to, sender = form.get("To", [""])[0], form.get("From", [""])[0]
        body, media_urls = form.get("Body", [""])[0], form.get("MediaUrl", [])
        if not to:
            return self._error(400, 21604, "A 'To' phone number is required.")
        if not sender:
            return self._error(400, 21603, "A 'From' phone number is required.")
        if not (body or media_urls or form.get("ContentSid")):
            return self._error(400, 21619, "A text message body or media URL must be specified.")
        if to.startswith(WHATSAPP_PREFIX) != sender.startswith(WHATSAPP_PREFIX):
            return self._error(400, 21910, "Invalid From and To pair. From and To should be of the same channel")
        digits = to.removeprefix(WHATSAPP_PREFIX).removeprefix("+")
        if not digits.isdigit() or digits.endswith(INVALID_NUMBER_SUFFIX):
            return self._error(400, 21211, f"Invalid 'To' Phone Number: {to.removeprefix(WHATSAPP_PREFIX)}")
        message = self._message_record(to=to, sender=sender, body=body, media_count=len(media_urls))
        callback_url = form.get("StatusCallback", [""])[0]
        self.status_callbacks[message["sid"]] = callback_url
        threading.Thread(target=self._statuses_play, args=(message["sid"], callback_url), daemon=True).start()
        return FakeResponse.json(201, message)

    def _message_record(self, *, to: str, sender: str, body: str, media_count: int) -> dict:
        sid = _new_sid("SM" if not media_count else "MM")
        now = _rfc2822_now()
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        message = {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender,
            "messaging_service_sid": None,
            "num_media": str(media_count),
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": to,
            "uri": f"{uri}.json",
        }
        with self._lock:
            self.messages[sid] = message
        return dict(message)

    def _message_fetch(self, request: FakeRequest) -> FakeResponse:
        failure = self._auth_failure(request)
        if failure:
            return failure
        with self._lock:
            message = self.messages.get(request.params["message_sid"])
            message = dict(message) if message else None
        if message is None:
            return self.not_found(request)
        return FakeResponse.json(200, message)

    def _media_get(self, request: FakeRequest) -> FakeResponse:
        # Twilio serves inbound media without auth unless the account turns "HTTP Basic auth for media" on.
        media = self.media.get(request.params["media_sid"])
        if media is None:
            return self.not_found(request)
        content, content_type = media
        return FakeResponse(200, content, content_type)

    # --- status callbacks ------------------------------------------------------------------------
    def _statuses_play(self, sid: str, callback_url: str) -> None:
        to = self.messages[sid]["to"]
        if to.endswith(OUTSIDE_WINDOW_SUFFIX):
            self.statuses_send(sid, ["failed"], error_code="63016", callback_url=callback_url)
        elif to.endswith(NOT_ON_WHATSAPP_SUFFIX):
            self.statuses_send(sid, ["undelivered"], error_code="63003", callback_url=callback_url)
        else:
            self.statuses_send(sid, ["sent", "delivered", "read"], callback_url=callback_url)

    def statuses_send(
        self, sid: str, statuses: list[str], *, error_code: str = "", callback_url: str | None = None
    ) -> None:
        """Move message `sid` through `statuses`, in that order, calling back its StatusCallback for each.

        Blocks for `status_delay_seconds` before each. `callback_url` overrides the message's own
        StatusCallback; without either, only the message changes.
        """
        if callback_url is None:
            callback_url = self.status_callbacks.get(sid, "")
        for status in statuses:
            time.sleep(self.status_delay_seconds)
            with self._lock:
                message = self.messages[sid]
                message.update(status=status, date_updated=_rfc2822_now())
                if status in {"failed", "undelivered"}:
                    message.update(error_code=int(error_code) if error_code else None)
                message = dict(message)
            if callback_url:
                self._signed_webhook_send(callback_url, self._status_fields(message, status, error_code))

    def _status_fields(self, message: dict, status: str, error_code: str) -> list[tuple[str, str]]:
        fields = [
            ("SmsSid", message["sid"]),
            ("SmsStatus", status),
            ("MessageStatus", status),
            ("ChannelToAddress", message["to"].removeprefix(WHATSAPP_PREFIX)),
            ("To", message["to"]),
            ("ChannelPrefix", "whatsapp"),
            ("MessageSid", message["sid"]),
            ("AccountSid", self.account_sid),
            ("From", message["from"]),
            ("ApiVersion", API_VERSION),
            ("ChannelInstallSid", self.channel_install_sid),
        ]
        if error_code and status in {"failed", "undelivered"}:
            fields.append(("ErrorCode", error_code))
        return fields

    def _status_route(self, request: FakeRequest) -> FakeResponse:
        payload = request.json() or {}
        sid = payload.get("sid", "")
        if sid not in self.messages:
            return FakeResponse.json(404, {"error": f"No message {sid!r}"})
        callback_url = payload.get("callback_url") or None
        statuses = list(payload.get("statuses", []))
        error_code = str(payload.get("error_code", ""))
        threading.Thread(
            target=self.statuses_send,
            args=(sid, statuses),
            kwargs={"error_code": error_code, "callback_url": callback_url},
            daemon=True,
        ).start()
        return FakeResponse.json(202, {"sid": sid, "statuses": statuses})

    def _account_route(self, request: FakeRequest) -> FakeResponse:
        self.account_status = str((request.json() or {}).get("status", self.account_status))
        return FakeResponse.json(200, {"status": self.account_status})

    # --- inbound messages ------------------------------------------------------------------------
    def inbound_send(self, kind: str = "text", **options) -> dict[str, str]:
        """Post an inbound WhatsApp message of `kind` to the inbound webhook URL, signed; return its fields.

        `options` are those of POST /_fake/inbound (`from`, `text`, `profile_name`, ...).
        """
        fields = self._inbound_fields(kind, options)
        self._signed_webhook_send(options.get("webhook_url") or self.webhook_url, fields)
        return dict(fields)

    def _inbound_fields(self, kind: str, options: dict) -> list[tuple[str, str]]:
        sender = "+" + str(options.get("from", "+5511912345678")).removeprefix(WHATSAPP_PREFIX).removeprefix("+")
        media_count = 1 if kind in _MEDIA_CONTENT_TYPES else 0
        sid = _new_sid("MM" if media_count else "SM")
        message_type = "button" if kind == "button" else kind
        text = str(options.get("text", "Oi, tudo bem?" if kind == "text" else ""))
        if kind == "button":
            text = str(options.get("button_text", "Yes, confirm"))
        fields = [
            ("SmsMessageSid", sid),
            ("NumMedia", str(media_count)),
            ("ProfileName", str(options.get("profile_name", "Maria"))),
            ("MessageType", message_type),
            ("SmsSid", sid),
            ("WaId", sender.removeprefix("+")),
            ("SmsStatus", "received"),
            ("Body", text),
            ("To", WHATSAPP_PREFIX + self.sender_number),
            ("NumSegments", "1"),
            ("ReferralNumMedia", "0"),
            ("MessageSid", sid),
            ("AccountSid", self.account_sid),
            ("From", WHATSAPP_PREFIX + sender),
            ("ApiVersion", API_VERSION),
        ]
        if media_count:
            fields += self._media_fields(sid, kind, options)
        if kind == "location":
            fields += [
                ("Latitude", str(options.get("latitude", -23.5505))),
                ("Longitude", str(options.get("longitude", -46.6333))),
                ("Address", str(options.get("address", "Praca da Se, Sao Paulo"))),
                ("Label", str(options.get("label", "Marco Zero"))),
            ]
        if kind == "button":
            fields += [
                ("ButtonText", text),
                ("ButtonPayload", str(options.get("button_payload", "confirm"))),
            ]
        if options.get("replied_to"):
            fields += [
                ("OriginalRepliedMessageSid", str(options["replied_to"])),
                ("OriginalRepliedMessageSender", WHATSAPP_PREFIX + self.sender_number),
            ]
        return fields

    def _media_fields(self, message_sid: str, kind: str, options: dict) -> list[tuple[str, str]]:
        content_type = str(options.get("media_content_type") or _MEDIA_CONTENT_TYPES[kind])
        media_url = str(options.get("media_url", ""))
        if not media_url:
            media_sid = _new_sid("ME")
            self.media[media_sid] = (base64.b64decode(qr_png_base64(f"{kind} {message_sid}")), content_type)
            media_url = f"{self.url}/{API_VERSION}/Accounts/{self.account_sid}/Messages/{message_sid}/Media/{media_sid}"
        return [("MediaContentType0", content_type), ("MediaUrl0", media_url)]

    def _inbound_route(self, request: FakeRequest) -> FakeResponse:
        options = dict(request.json() or {})
        kind = str(options.pop("kind", "text"))
        if kind not in {"text", "location", "button", *_MEDIA_CONTENT_TYPES}:
            return FakeResponse.json(400, {"error": f"Unknown inbound kind {kind!r}"})
        if not (options.get("webhook_url") or self.webhook_url):
            return FakeResponse.json(400, {"error": "No webhook_url: set it as an option or in the body"})
        return FakeResponse.json(202, self.inbound_send(kind, **options))

    # --- signed delivery -------------------------------------------------------------------------
    def _signed_webhook_send(self, url: str, fields: list[tuple[str, str]]) -> None:
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "TwilioProxy/1.1",
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
            "X-Twilio-Signature": twilio_signature(self.auth_token, url, fields),
        }
        self.webhook_send(url, urlencode(fields).encode(), headers)
