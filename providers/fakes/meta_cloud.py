"""A fake Meta WhatsApp Cloud API: the Graph routes of one phone number, and its signed webhooks.

It answers like graph.facebook.com (providers.md section 3): bearer token auth (a wrong token is a
401 with error code 190), Graph's `{"error": {...}}` envelope with the codes the real API uses,
`wamid.` message ids, the `contacts[].wa_id` Meta resolved (Brazil's ninth digit added), media
upload and the two-step media download. After each send it posts the `statuses` webhooks Meta
would (sent, delivered, read), signed with `X-Hub-Signature-256` over the exact bytes, and JSON
escaped to ASCII as Meta does. Meta never echoes API sends back as messages, so neither does this.

Options (`--set key=value`, or keyword arguments):
- `webhook_url`: where webhooks go (Meta's is set once per app in the app dashboard);
- `app_secret`, `access_token`, `phone_number_id`, `verify_token`: the credentials it accepts
  and signs with; `display_phone_number`, `verified_name`, `waba_id`, `api_version`: what it reports;
- `status_delay_seconds`: the gap between a send and each status webhook (default 0.05);
- `auto_read`: `false` to stop at `delivered`;
- `allowed_recipients`: comma-separated digits; when set, other recipients answer 131030, as a
  test number's allowed list does.
Recipients ending in 1047 (re-engagement) or 1026 (undeliverable) are accepted with a wamid, then
fail asynchronously with a `failed` status carrying that error code, as the real API does.

Control routes (never subject to faults):
- POST /_fake/inbound `{"variant": "text", "sender": "...", "name": "...", "text": "...",
  "timestamp": 1741616525, "context_id": "wamid..."}` posts an inbound webhook; variants:
  text, image, video, audio, document, sticker, location, reply, reaction, unsupported, bsuid
  (a username user without wa_id), two_messages (one change, two messages), two_entries, other_number
  (a change for another phone number id of the same app). Answers `{"message_ids": [...]}`.
- POST /_fake/statuses `{"message_id": "...", "statuses": ["read", "delivered"], "batched": false}`
  posts status webhooks in exactly that order (one webhook each, or one with all when batched).
- POST /_fake/throughput `{"count": 1}`: the next sends answer error 130429 (HTTP 400).
- POST /_fake/body_error `{"code": 131000}`: the next Graph call answers HTTP 200 with an error body.
- POST /_fake/verify `{"challenge": "1158201444"}`: Meta's GET subscription handshake to webhook_url.
- GET /_fake/sent: messages sent, reads marked and media uploaded.
"""

import base64
import email.parser
import email.policy
import hashlib
import hmac
import itertools
import json
import re
import secrets
import threading
import time
from urllib.parse import urlencode

import requests

from providers.fakes.server import FakeProviderServer, FakeRequest, FakeResponse, SentWebhook

DEFAULT_SENDER = "5511912345678"
# The fake's own credentials, for loopback tests and local development only.
DEFAULT_APP_SECRET = "fake-app-secret"  # noqa: S105
DEFAULT_ACCESS_TOKEN = "fake-access-token"  # noqa: S105
DEFAULT_VERIFY_TOKEN = "fake-verify-token"  # noqa: S105
STATUS_ORDER = ("sent", "delivered", "read")
MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")
SUPPORTED_SEND_TYPES = frozenset({"text", "location", "reaction", "template", "interactive", "contacts", *MEDIA_TYPES})

# Recipients whose send is accepted and then fails in a `failed` status webhook (providers.md 3.2:
# 131047 and 131026 arrive asynchronously after a 200 with a wamid).
ASYNC_FAILURES = {
    "1047": (
        131047,
        "Re-engagement message",
        "More than 24 hours have passed since the customer last replied to this number.",
    ),
    "1026": (131026, "Message undeliverable", "Message Undeliverable."),
}

INBOUND_VARIANTS = (
    "text",
    "image",
    "video",
    "audio",
    "document",
    "sticker",
    "location",
    "reply",
    "reaction",
    "unsupported",
    "bsuid",
    "two_messages",
    "two_entries",
    "other_number",
)


def _truthy(value) -> bool:
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def _bsuid_for(sender: str) -> str:
    # Meta now sends a business-scoped user id beside wa_id (providers.md 3.3); stable per sender.
    return f"BR.{int(hashlib.sha256(sender.encode()).hexdigest(), 16) % 10**19:019d}"


def _brazil_wa_id(digits: str) -> str:
    # Meta resolves +55 DD 8-digit mobiles (first digit 6-9) to the 9-digit form in contacts[].wa_id.
    if digits.startswith("55") and len(digits) == 12 and digits[4] in "6789":
        return digits[:4] + "9" + digits[4:]
    return digits


class FakeMetaCloudServer(FakeProviderServer):
    """Graph API routes of one WhatsApp Business phone number, with Meta's webhooks."""

    provider_name = "meta_cloud"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        webhook_url: str = "",
        app_secret: str = DEFAULT_APP_SECRET,
        access_token: str = DEFAULT_ACCESS_TOKEN,
        phone_number_id: str = "109876543210987",
        verify_token: str = DEFAULT_VERIFY_TOKEN,
        display_phone_number: str = "15550100200",
        verified_name: str = "Conversa Test",
        waba_id: str = "102938475610293",
        api_version: str = "v21.0",
        status_delay_seconds: float | str = 0.05,
        webhook_delay_seconds: float | str = 0.05,
        auto_read: bool | str = True,
        allowed_recipients: str | list[str] = "",
    ):
        super().__init__(host=host, port=int(port), webhook_delay_seconds=float(webhook_delay_seconds))
        self.webhook_url = webhook_url
        self.app_secret = app_secret
        self.access_token = access_token
        self.phone_number_id = phone_number_id
        self.verify_token = verify_token
        self.display_phone_number = display_phone_number
        self.verified_name = verified_name
        self.waba_id = waba_id
        self.api_version = api_version
        self.status_delay_seconds = float(status_delay_seconds)
        self.auto_read = _truthy(auto_read)
        if isinstance(allowed_recipients, str):
            allowed_recipients = [item for item in allowed_recipients.split(",") if item.strip()]
        self.allowed_recipients = {re.sub(r"\D", "", item) for item in allowed_recipients}
        self.sent: list[dict] = []  # every message accepted: id, to, wa_id, payload
        self.reads: list[str] = []  # message ids marked as read
        self.media: dict[str, dict] = {}  # media id -> content, mime_type, filename
        self.inbound_ids: list[str] = []  # wamids of inbound messages posted to us
        self._state_lock = threading.Lock()
        self._throughput_failures = 0
        self._body_errors: list[int] = []
        self._counter = itertools.count(1)

        prefix = f"/{re.escape(api_version)}"
        self.route("GET", rf"{prefix}/(?P<object_id>[^/]+)", self._object_get)
        self.route("POST", rf"{prefix}/(?P<phone_number_id>[^/]+)/messages", self._messages_post)
        self.route("POST", rf"{prefix}/(?P<phone_number_id>[^/]+)/media", self._media_post)
        self.route("GET", r"/whatsapp_business/attachments/", self._attachment_get)
        self.route("POST", r"/_fake/inbound", self._inbound_control)
        self.route("POST", r"/_fake/statuses", self._statuses_control)
        self.route("POST", r"/_fake/throughput", self._throughput_control)
        self.route("POST", r"/_fake/body_error", self._body_error_control)
        self.route("POST", r"/_fake/verify", self._verify_control)
        self.route("GET", r"/_fake/sent", self._sent_control)

    # --- Graph error shapes -------------------------------------------------------------------------
    def graph_error(
        self,
        status: int,
        code: int,
        message: str,
        *,
        details: str = "",
        subcode: int | None = None,
        is_transient: bool | None = None,
    ) -> FakeResponse:
        """Graph's error envelope (providers.md 3.2, pywa `WhatsAppError.from_dict`)."""
        error = {"message": message, "type": "OAuthException", "code": code}
        if subcode is not None:
            error["error_subcode"] = subcode
        if details:
            error["error_data"] = {"messaging_product": "whatsapp", "details": details}
        if is_transient is not None:
            error["is_transient"] = is_transient
        error["fbtrace_id"] = "A" + secrets.token_urlsafe(16)
        headers = {"WWW-Authenticate": f'OAuth "Facebook Platform" "invalid_token" "{message}"'} if code == 190 else {}
        return FakeResponse.json(status, {"error": error}, headers)

    def error_response(self, status: int) -> FakeResponse:
        if status == 429:
            return self.graph_error(
                429, 130429, "(#130429) Rate limit hit", details="Cloud API message throughput has been reached."
            )
        if status == 401:
            return self.graph_error(401, 190, "Invalid OAuth access token - Cannot parse access token")
        if status == 500:
            return self.graph_error(500, 1, "An unknown error has occurred.", is_transient=True)
        if status >= 500:
            return self.graph_error(status, 2, "Service temporarily unavailable", is_transient=True)
        return self.graph_error(status, 100, "(#100) Invalid parameter")

    def not_found(self, request: FakeRequest) -> FakeResponse:
        if request.path.startswith(f"/{self.api_version}/"):
            return self.graph_error(400, 2500, f"Unknown path components: {request.path}")
        return super().not_found(request)

    def _unknown_object(self, method: str, object_id: str) -> FakeResponse:
        return self.graph_error(
            400,
            100,
            f"Unsupported {method.lower()} request. Object with ID '{object_id}' does not exist, cannot be loaded "
            "due to missing permissions, or does not support this operation.",
            subcode=33,
        )

    def _auth_error(self, request: FakeRequest) -> FakeResponse | None:
        header = request.header("Authorization")
        if not header:
            return self.graph_error(401, 104, "An access token is required to request this resource.")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(), self.access_token):
            return self.graph_error(401, 190, "Invalid OAuth access token - Cannot parse access token")
        return None

    def _body_error_next(self) -> FakeResponse | None:
        with self._state_lock:
            code = self._body_errors.pop(0) if self._body_errors else None
        if code is None:
            return None
        # Not a documented Meta habit, but a Graph error can come with HTTP 200; adapters must look.
        return self.graph_error(200, code, f"(#{code}) Something went wrong", is_transient=True)

    # --- Graph routes -------------------------------------------------------------------------------
    def _object_get(self, request: FakeRequest) -> FakeResponse:
        denied = self._auth_error(request) or self._body_error_next()
        if denied:
            return denied
        object_id = request.params["object_id"]
        if object_id == self.phone_number_id:
            return FakeResponse.json(200, self._phone_number(request.query.get("fields", [""])[0]))
        with self._state_lock:
            media = self.media.get(object_id)
        if media is None:
            return self._unknown_object("GET", object_id)
        # The download URL is short-lived and needs the same bearer token (providers.md 3.1).
        query = urlencode({"mid": object_id, "ext": int(time.time()), "hash": secrets.token_urlsafe(8)})
        return FakeResponse.json(
            200,
            {
                "messaging_product": "whatsapp",
                "url": f"{self.url}/whatsapp_business/attachments/?{query}",
                "mime_type": media["mime_type"],
                "sha256": hashlib.sha256(media["content"]).hexdigest(),
                "file_size": len(media["content"]),
                "id": object_id,
            },
        )

    def _phone_number(self, fields: str) -> dict:
        number = {
            "verified_name": self.verified_name,
            "display_phone_number": self.display_phone_number,
            "quality_rating": "GREEN",
            "code_verification_status": "VERIFIED",
            "platform_type": "CLOUD_API",
            "throughput": {"level": "STANDARD"},
        }
        wanted = [name for name in fields.split(",") if name] or list(number)
        return {**{name: number[name] for name in wanted if name in number}, "id": self.phone_number_id}

    def _attachment_get(self, request: FakeRequest) -> FakeResponse:
        denied = self._auth_error(request)
        if denied:
            return denied
        with self._state_lock:
            media = self.media.get((request.query.get("mid") or [""])[0])
        if media is None:
            return FakeResponse.json(404, {"error": "Not Found"})
        return FakeResponse(200, media["content"], media["mime_type"])

    def _media_post(self, request: FakeRequest) -> FakeResponse:
        denied = self._auth_error(request) or self._body_error_next()
        if denied:
            return denied
        if request.params["phone_number_id"] != self.phone_number_id:
            return self._unknown_object("POST", request.params["phone_number_id"])
        fields, files = _multipart(request)
        if fields.get("messaging_product") != "whatsapp":
            return self.graph_error(400, 100, "(#100) The parameter messaging_product is required.")
        if "file" not in files:
            return self.graph_error(400, 100, "(#100) The parameter file is required.")
        mime_type = fields.get("type") or ""
        if not mime_type:
            return self.graph_error(400, 100, "(#100) Param type is required.")
        filename, content = files["file"]
        return FakeResponse.json(200, {"id": self._media_store(content, mime_type, filename)})

    def _messages_post(self, request: FakeRequest) -> FakeResponse:
        denied = self._auth_error(request) or self._body_error_next()
        if denied:
            return denied
        if request.params["phone_number_id"] != self.phone_number_id:
            return self._unknown_object("POST", request.params["phone_number_id"])
        try:
            body = request.json()
        except ValueError:
            return self.graph_error(400, 100, "(#100) Invalid parameter", details="Request body is not valid JSON.")
        if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp":
            return self.graph_error(400, 100, "(#100) The parameter messaging_product is required.")
        if body.get("status") == "read":
            return self._read_mark(body)
        return self._message_send(body)

    def _read_mark(self, body: dict) -> FakeResponse:
        message_id = str(body.get("message_id") or "")
        with self._state_lock:
            is_known = message_id in self.inbound_ids
            if is_known:
                self.reads.append(message_id)
        if not is_known:
            return self.graph_error(400, 100, "(#100) Invalid parameter", details=f"Invalid message_id: {message_id}")
        return FakeResponse.json(200, {"success": True})

    def _message_send(self, body: dict) -> FakeResponse:
        with self._state_lock:
            is_throttled = self._throughput_failures > 0
            self._throughput_failures -= int(is_throttled)
        if is_throttled:
            # Meta sends the throughput limit as HTTP 400: only the code says "retry".
            return self.graph_error(
                400, 130429, "(#130429) Rate limit hit", details="Cloud API message throughput has been reached."
            )
        message_type = body.get("type", "text")
        content = body.get(message_type)
        invalid = self._content_problem(message_type, content)
        if invalid:
            return self.graph_error(400, 100, "(#100) Invalid parameter", details=invalid)
        if body.get("to"):
            return self._message_to_phone(body)
        if body.get("recipient"):
            return self._message_accept(body, recipient=str(body["recipient"]), contact={"user_id": body["recipient"]})
        return self.graph_error(400, 100, "(#100) The parameter to is required.")

    def _message_to_phone(self, body: dict) -> FakeResponse:
        raw_to = str(body["to"])
        digits = re.sub(r"\D", "", raw_to)
        if not 8 <= len(digits) <= 15:
            return self.graph_error(
                400, 100, "(#100) Invalid parameter", details=f"Invalid WhatsApp recipient phone number: {raw_to}"
            )
        if self.allowed_recipients and digits not in self.allowed_recipients:
            return self.graph_error(
                400,
                131030,
                "(#131030) Recipient phone number not in allowed list",
                details="Recipient phone number not in allowed list: Add recipient phone number to recipient list "
                "and try again.",
            )
        wa_id = _brazil_wa_id(digits)
        return self._message_accept(body, recipient=wa_id, contact={"input": raw_to, "wa_id": wa_id})

    def _content_problem(self, message_type: str, content) -> str:
        if message_type not in SUPPORTED_SEND_TYPES:
            return f"Unsupported message type: {message_type}"
        if not isinstance(content, dict):
            return f"The parameter {message_type} is required."
        if message_type == "text" and not content.get("body"):
            return "The parameter text['body'] is required."
        if message_type in MEDIA_TYPES:
            if not (content.get("link") or content.get("id")):
                return f"Either {message_type}['link'] or {message_type}['id'] is required."
            with self._state_lock:
                if content.get("id") and content["id"] not in self.media:
                    return f"Invalid media id: {content['id']}"
            if "caption" in content and message_type in {"audio", "sticker"}:
                return f"Param {message_type}['caption'] is not allowed."
        return ""

    def _message_accept(self, body: dict, *, recipient: str, contact: dict) -> FakeResponse:
        message_id = self._wamid(recipient)
        with self._state_lock:
            self.sent.append({"id": message_id, "to": recipient, "wa_id": contact.get("wa_id", ""), "payload": body})
        failure = ASYNC_FAILURES.get(recipient[-4:]) if contact.get("wa_id") else None
        if failure:
            self.statuses_send(message_id, ["failed"], recipient=recipient, error=failure)
        else:
            self.statuses_send(
                message_id, list(STATUS_ORDER if self.auto_read else STATUS_ORDER[:2]), recipient=recipient
            )
        return FakeResponse.json(
            200, {"messaging_product": "whatsapp", "contacts": [contact], "messages": [{"id": message_id}]}
        )

    def _media_store(self, content: bytes, mime_type: str, filename: str = "") -> str:
        media_id = str(10**15 + next(self._counter) * 7919 + secrets.randbelow(1000))
        with self._state_lock:
            self.media[media_id] = {"content": content, "mime_type": mime_type, "filename": filename}
        return media_id

    def _wamid(self, recipient: str) -> str:
        seed = f"{recipient}:{next(self._counter):06d}:{secrets.token_hex(6)}".encode()
        return "wamid.HBgN" + base64.b64encode(seed).decode()

    # --- webhooks -----------------------------------------------------------------------------------
    def throughput_limit_next(self, count: int = 1) -> None:
        """Make the next `count` sends answer error 130429 (HTTP 400, no Retry-After), as Meta does."""
        with self._state_lock:
            self._throughput_failures += count

    def body_error_next(self, code: int) -> None:
        """Make the next Graph call answer HTTP 200 with an error body carrying `code`."""
        with self._state_lock:
            self._body_errors.append(code)

    def statuses_send(
        self,
        message_id: str,
        statuses: list[str],
        *,
        recipient: str = DEFAULT_SENDER,
        batched: bool = False,
        error: tuple[int, str, str] | None = None,
        delay: float | None = None,
    ) -> None:
        """Post status webhooks for `message_id` in exactly the given order.

        Timestamps follow the real order (sent < delivered < read) whatever the delivery order, as
        when Meta retries a webhook: `read` can arrive before `delivered` and still be later.
        """
        base_time = int(time.time())
        items = []
        for name in statuses:
            position = STATUS_ORDER.index(name) if name in STATUS_ORDER else 0
            item = {"id": message_id, "status": name, "timestamp": str(base_time + position)}
            item["recipient_user_id" if "." in recipient else "recipient_id"] = recipient
            if name in ("sent", "delivered"):
                item["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "service"}
            if name == "sent":
                item["conversation"] = {
                    "id": secrets.token_hex(16),
                    "expiration_timestamp": str(base_time + 86400),
                    "origin": {"type": "service"},
                }
            if name == "failed":
                code, title, details = error or (131026, "Message undeliverable", "Message Undeliverable.")
                item["errors"] = [{"code": code, "title": title, "message": title, "error_data": {"details": details}}]
            items.append(item)
        step = self.status_delay_seconds if delay is None else delay
        if batched:
            self.webhook_deliver(self._envelope([{"statuses": items}]), delay=step)
            return
        for index, item in enumerate(items, start=1):
            self.webhook_deliver(self._envelope([{"statuses": [item]}]), delay=step * index)

    def inbound_send(
        self,
        variant: str = "text",
        *,
        sender: str = DEFAULT_SENDER,
        name: str = "Maria",
        text: str = "Oi",
        timestamp: int | None = None,
        context_id: str = "",
        delay: float | None = None,
    ) -> list[str]:
        """Post an inbound message webhook of `variant`; return the wamids it carries.

        Raise ValueError for an unknown variant.
        """
        if variant not in INBOUND_VARIANTS:
            raise ValueError(f"Unknown inbound variant {variant!r}; choose one of {', '.join(INBOUND_VARIANTS)}")
        moment = str(timestamp or int(time.time()))
        contact = {"profile": {"name": name}, "wa_id": sender, "user_id": _bsuid_for(sender)}
        if variant == "bsuid":
            # A user with a username: no phone in the payload, only the BSUID (pywa types/user.py).
            contact = {"profile": {"name": name, "username": "@maria"}, "user_id": "BR.4455667788990011223"}
        message_ids = []

        def message(message_type: str, **content) -> dict:
            message_id = self._wamid(sender)
            message_ids.append(message_id)
            item = {"id": message_id, "timestamp": moment, "type": message_type, **content}
            if variant == "bsuid":
                item["from_user_id"] = contact["user_id"]
            else:
                item["from"] = sender
            return item

        values = self._inbound_values(variant, message, contact, text, context_id)
        if variant == "other_number":
            payload = self._envelope(values, phone_number_id="100000000000001", display_phone_number="15550100999")
        elif variant == "two_entries":
            payload = self._envelope(values[:1])
            payload["entry"].append(self._envelope(values[1:])["entry"][0])
        else:
            payload = self._envelope(values)
        with self._state_lock:
            self.inbound_ids.extend(message_ids)
        self.webhook_deliver(payload, delay=delay)
        return message_ids

    def _inbound_values(self, variant: str, message, contact: dict, text: str, context_id: str) -> list[dict]:
        """Return the change `value`s (without metadata) for an inbound variant."""
        if variant in MEDIA_TYPES:
            return [{"contacts": [contact], "messages": [message(variant, **{variant: self._inbound_media(variant)})]}]
        if variant == "location":
            location = {
                "latitude": -23.5613496,
                "longitude": -46.6565712,
                "name": "MASP",
                "address": "Av. Paulista, 1578 - Bela Vista, São Paulo",
            }
            return [{"contacts": [contact], "messages": [message("location", location=location)]}]
        if variant == "reply":
            quoted = context_id or self._wamid("quoted")
            reply = message("text", text={"body": text}, context={"from": self.display_phone_number, "id": quoted})
            return [{"contacts": [contact], "messages": [reply]}]
        if variant == "reaction":
            reaction = {"message_id": context_id or self._wamid("reacted"), "emoji": "\U0001f44d"}
            return [{"contacts": [contact], "messages": [message("reaction", reaction=reaction)]}]
        if variant == "unsupported":
            errors = [{"code": 131051, "title": "Message type unknown", "message": "Message type unknown"}]
            return [{"contacts": [contact], "messages": [message("unsupported", errors=errors)]}]
        if variant == "two_messages":
            first = message("text", text={"body": text})
            second = message("text", text={"body": text + " (2)"})
            return [{"contacts": [contact], "messages": [first, second]}]
        if variant == "two_entries":
            return [
                {"contacts": [contact], "messages": [message("text", text={"body": text})]},
                {"contacts": [contact], "messages": [message("text", text={"body": text + " (2)"})]},
            ]
        return [{"contacts": [contact], "messages": [message("text", text={"body": text})]}]

    def _inbound_media(self, kind: str) -> dict:
        mime_type, extra = {
            "image": ("image/jpeg", {"caption": "Foto do pedido"}),
            "video": ("video/mp4", {"caption": "Vídeo"}),
            "audio": ("audio/ogg; codecs=opus", {"voice": True}),
            "document": ("application/pdf", {"caption": "Boleto", "filename": "boleto.pdf"}),
            "sticker": ("image/webp", {"animated": False}),
        }[kind]
        content = f"fake {kind} bytes {secrets.token_hex(4)}".encode()
        media_id = self._media_store(content, mime_type, extra.get("filename", ""))
        return {"mime_type": mime_type, "sha256": hashlib.sha256(content).hexdigest(), "id": media_id, **extra}

    def _envelope(self, values: list[dict], *, phone_number_id: str = "", display_phone_number: str = "") -> dict:
        metadata = {
            "display_phone_number": display_phone_number or self.display_phone_number,
            "phone_number_id": phone_number_id or self.phone_number_id,
        }
        changes = [
            {"value": {"messaging_product": "whatsapp", "metadata": metadata, **value}, "field": "messages"}
            for value in values
        ]
        return {"object": "whatsapp_business_account", "entry": [{"id": self.waba_id, "changes": changes}]}

    def webhook_sign(self, body: bytes) -> dict[str, str]:
        """The headers Meta sends with a webhook body: both signatures over the exact bytes."""
        key = self.app_secret.encode()
        return {
            "Content-Type": "application/json",
            "User-Agent": "facebookexternalua",
            "X-Hub-Signature": "sha1=" + hmac.new(key, body, hashlib.sha1).hexdigest(),
            "X-Hub-Signature-256": "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest(),
        }

    def webhook_deliver(self, payload: dict, *, delay: float | None = None) -> None:
        """Sign and post `payload` to webhook_url, with the faults applied."""
        # Meta's bodies are compact and escape non-ASCII as \uXXXX (json.dumps' default).
        body = json.dumps(payload, separators=(",", ":")).encode()
        self.webhook_send(self.webhook_url, body, self.webhook_sign(body), delay=delay)

    def subscription_verify(self, challenge: str = "1158201444") -> tuple[int | None, bytes]:
        """Make Meta's GET handshake to webhook_url now; return the status and body it answered."""
        query = {"hub.mode": "subscribe", "hub.challenge": challenge, "hub.verify_token": self.verify_token}
        url = f"{self.webhook_url}{'&' if '?' in self.webhook_url else '?'}{urlencode(query)}"
        try:
            response = self._webhook_session.get(url, headers={"User-Agent": "facebookplatform/1.0"}, timeout=10)
        except requests.RequestException:
            status, body = None, b""
        else:
            status, body = response.status_code, response.content
        with self._state_lock:
            self.webhooks.append(SentWebhook(url=url, body=b"", headers={}, status=status))
        return status, body

    # --- control routes -----------------------------------------------------------------------------
    def _inbound_control(self, request: FakeRequest) -> FakeResponse:
        options = request.json() or {}
        try:
            message_ids = self.inbound_send(**options)
        except (TypeError, ValueError) as error:
            return FakeResponse.json(400, {"error": str(error)})
        return FakeResponse.json(200, {"message_ids": message_ids})

    def _statuses_control(self, request: FakeRequest) -> FakeResponse:
        options = request.json() or {}
        try:
            self.statuses_send(
                str(options["message_id"]),
                list(options.get("statuses") or STATUS_ORDER),
                recipient=str(options.get("recipient") or DEFAULT_SENDER),
                batched=bool(options.get("batched")),
            )
        except (KeyError, TypeError, ValueError) as error:
            return FakeResponse.json(400, {"error": str(error)})
        return FakeResponse.json(200, {"queued": True})

    def _throughput_control(self, request: FakeRequest) -> FakeResponse:
        self.throughput_limit_next(int((request.json() or {}).get("count", 1)))
        return FakeResponse.json(200, {"throughput_failures": self._throughput_failures})

    def _body_error_control(self, request: FakeRequest) -> FakeResponse:
        self.body_error_next(int((request.json() or {}).get("code", 131000)))
        return FakeResponse.json(200, {"queued": True})

    def _verify_control(self, request: FakeRequest) -> FakeResponse:
        status, body = self.subscription_verify(str((request.json() or {}).get("challenge", "1158201444")))
        return FakeResponse.json(200, {"status": status, "body": body.decode(errors="replace")})

    def _sent_control(self, request: FakeRequest) -> FakeResponse:
        with self._state_lock:
            media = {
                media_id: {"mime_type": item["mime_type"], "size": len(item["content"])}
                for media_id, item in self.media.items()
            }
            return FakeResponse.json(200, {"sent": self.sent, "reads": self.reads, "media": media})


def _multipart(request: FakeRequest) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    """Split a multipart/form-data body into its text fields and its files."""
    content_type = request.header("Content-Type")
    if not content_type.lower().startswith("multipart/form-data"):
        return {}, {}
    parsed = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + request.body
    )
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    for part in parsed.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is not None:
            files[name] = (filename, payload)
        elif name:
            fields[name] = payload.decode()
    return fields, files
