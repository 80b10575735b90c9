"""A fake Evolution API v2 server: instances, QR and pairing codes, sends, and the webhooks they cause.

It speaks the contract in shared/reference/providers.md section 1 (Evolution API 2.3.x): the same
paths, the `apikey` header (the global key, or an instance's own token on its routes), the guard
order (unknown instance 404, then name in use 403, then key 401), the error envelope
`{"status", "error", "response": {"message"}}`, 201 on create/send/markMessageAsRead/webhook set,
and the errors Evolution sends with HTTP 200 (`{"error": true, "message": ...}` from connect and
restart). Webhooks go to the URL each instance was created with, carrying the headers configured
there, in Evolution's envelope `{"event", "instance", "data", "destination", "date_time", "sender",
"server_url", "apikey"}`, filtered by the instance's event list.

What happens on its own:
- create (qrcode true) or connect issues a QR (`qrcode.updated` webhook); `scan()` or
  POST /_fake/scan/{instance} opens the session (`connection.update` open, with the account's wuid);
- a send answers 201 with the stored message (status PENDING), then emits `send.message`, a
  `messages.upsert` with fromMe true, and `messages.update` DELIVERY_ACK then READ;
- numbers ending in 0000 are not on WhatsApp: sends to them answer 400 with `exists: false`;
- sending while the session is not open answers 400 "Error: Connection Closed" (issue #2229).

Options (keyword arguments, or `--set key=value` on `python -m providers.fakes evolution`):
- `api_key`: the global AUTHENTICATION_API_KEY it accepts (default "fake-evolution-key");
- `webhook_delay_seconds`: delay before the first webhook of an action (default 0.05);
- `status_delay_seconds`: the gap between a send and its DELIVERY_ACK, and again to READ (0.1);
- `auto_status`: emit DELIVERY_ACK and READ after sends (default true);
- `qr_delay_seconds`: when above 0, the QR is not ready for that long after create/connect, which
  answer `{"count": 0}` meanwhile (issue evolution-foundation/evolution-api#2385); default 0;
- `auto_scan_seconds`: when above 0, every QR is "scanned" by itself after that long (demo);
- `connect_error`: when set, connect and restart answer HTTP 200 `{"error": true, "message":
  "Error: <connect_error>"}`, as Evolution does when Baileys fails;
- `server_url`: the `server_url` put in webhooks (default: this server's own URL).

Control routes (no apikey), each with a method of the same purpose for tests:
- POST /_fake/scan/{instance} `{"phone": "5511987654321"}` (optional) → `scan()`;
- POST /_fake/qr_refresh/{instance} → `qr_refresh()` (a new QR, as Baileys issues every ~20 s);
- POST /_fake/inbound/{instance} `{"variant": ..., "sender": ..., "text": ..., "push_name": ...,
  "timestamp": ...}` → `inbound()`; variants in INBOUND_VARIANTS;
- POST /_fake/status/{instance} `{"key_id": ..., "status": "ERROR"}` → `status_emit()`;
- POST /_fake/disconnect/{instance} `{"status_reason": 401}` → `disconnect()` (the phone logs out,
  or 403 for a banned account, 428 for a dropped connection);
- POST /_fake/qr_limit/{instance} → `qr_limit_reach()` (QR limit message, then state refused);
- GET /_fake/instances → every instance with its state and the messages sent through it;
- plus the base class's POST /_fake/faults and GET /_fake/state.
"""

import base64
import contextlib
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus

from providers.fakes.qr import qr_data_uri, qr_png_base64
from providers.fakes.server import FakeProviderServer, FakeRequest, FakeResponse

NOT_ON_WHATSAPP_SUFFIX = "0000"
INTEGRATIONS = frozenset({"WHATSAPP-BAILEYS", "WHATSAPP-BUSINESS", "EVOLUTION"})
MEDIA_TYPES = frozenset({"image", "document", "video", "audio"})
INBOUND_VARIANTS = (
    "text",  # message.conversation (2.2+ folds extendedTextMessage into it)
    "extended_text",  # message.extendedTextMessage.text, the pre-2.2 shape
    "image",  # imageMessage with caption, and message.base64 when the webhook asks for base64
    "document",
    "audio",  # a voice note (ptt)
    "video",
    "sticker",
    "location",
    "lid",  # key.remoteJid is an @lid, key.remoteJidAlt the phone JID (2.3.3+)
    "group",  # key.remoteJid a group, key.participant the sender
    "group_lid",  # key.participant an @lid, key.participantAlt the phone JID
    "reaction",  # a message type we do not handle
    "status_broadcast",  # a WhatsApp Status post: noise the receiver must drop
)
GROUP_JID = "120363025246125486@g.us"
LID_JID = "189273645546123@lid"
PAIRING_ALPHABET = "ABCDEFGHJKLMNPQRSTVWXYZ0123456789"
STATUS_CODES = {"ERROR": 0, "PENDING": 1, "SERVER_ACK": 2, "DELIVERY_ACK": 3, "READ": 4, "PLAYED": 5}

# Small but real files, so what arrives as base64 opens: a 1x1 lossless WebP (Modernizr's probe),
# a one-page PDF. Audio and video carry only their container's magic bytes.
_WEBP_1X1 = "UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA=="
_PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Count 0/Kids[]>>endobj\n%%EOF\n"
_OGG = b"OggS\x00\x02" + bytes(22) + b"OpusHead"
_MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"


@dataclass
class FakeInstance:
    name: str
    instance_id: str
    token: str
    integration: str
    webhook: dict
    settings: dict
    state: str = "close"
    number: str = ""  # the account's phone digits once a session opened
    profile_name: str = "Conversa Demo"
    qr_code: str = ""
    qr_image: str = ""
    qr_count: int = 0
    pairing_code: str = ""
    qr_ready_at: float = 0.0  # monotonic time before which connect answers {"count": 0}
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds"))
    messages: list = field(default_factory=list)  # every message sent through the API (messageRaw)
    reads: list = field(default_factory=list)  # every key marked as read

    @property
    def owner_jid(self) -> str:
        return f"{self.number}@s.whatsapp.net" if self.number else ""


def _true(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _envelope(status: int, message) -> dict:
    return {"status": status, "error": HTTPStatus(status).phrase, "response": {"message": message}}


def _error(status: int, message) -> FakeResponse:
    return FakeResponse.json(status, _envelope(status, message))


def _message_id() -> str:
    # Baileys' ids for messages sent from this device: 3EB0 and hex, 20 characters or more.
    return "3EB0" + secrets.token_hex(8).upper()


def _inbound_id() -> str:
    return "3A" + secrets.token_hex(9).upper()


def _jid(number: str) -> str:
    """Return Evolution's JID for a `number` field (src/utils/createJid.ts, without the BR/MX rewrites)."""
    if "@" in number:
        return number
    digits = "".join(character for character in number if character.isdigit())
    if "-" in number or len(digits) >= 18:
        return f"{digits}@g.us"
    return f"{digits}@s.whatsapp.net"


def _is_on_whatsapp(jid: str) -> bool:
    if jid.endswith("@g.us"):
        return True
    return not jid.split("@")[0].split(":")[0].endswith(NOT_ON_WHATSAPP_SUFFIX)


def _looks_like_base64(value: str) -> bool:
    try:
        base64.b64decode(value, validate=True)
    except ValueError:
        return False
    return bool(value)


def _local_time_with_z() -> str:
    # Evolution's date_time is `new Date(Date.now() - tzOffset).toISOString()`: the server's local
    # time wearing a "Z" it does not deserve (providers.md 1.6). Reproduced so receivers ignore it.
    local = datetime.now(UTC).astimezone().replace(tzinfo=None)
    return local.isoformat(timespec="milliseconds") + "Z"


class FakeEvolutionServer(FakeProviderServer):
    """An Evolution API v2 server on loopback, holding any number of instances in memory."""

    provider_name = "evolution"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | str = 0,
        api_key: str = "fake-evolution-key",
        webhook_delay_seconds: float | str = 0.05,
        status_delay_seconds: float | str = 0.1,
        auto_status: bool | str = True,
        qr_delay_seconds: float | str = 0.0,
        auto_scan_seconds: float | str = 0.0,
        connect_error: str = "",
        server_url: str = "",
    ):
        super().__init__(host=host, port=int(port), webhook_delay_seconds=float(webhook_delay_seconds))
        self.api_key = api_key
        self.status_delay_seconds = float(status_delay_seconds)
        self.auto_status = _true(auto_status)
        self.qr_delay_seconds = float(qr_delay_seconds)
        self.auto_scan_seconds = float(auto_scan_seconds)
        self.connect_error = connect_error
        self.server_url = server_url
        self.instances: dict[str, FakeInstance] = {}
        self._state_lock = threading.RLock()
        self._routes_add()

    def _routes_add(self) -> None:
        name = r"(?P<name>[^/]+)"
        self.route("GET", r"/", self._welcome)
        self.route("POST", r"/instance/create", self._instance_create)
        self.route("GET", r"/instance/fetchInstances", self._instances_fetch)
        self.route("GET", rf"/instance/connect/{name}", self._with_instance(self._instance_connect))
        self.route("GET", rf"/instance/connectionState/{name}", self._with_instance(self._instance_state))
        self.route("POST", rf"/instance/restart/{name}", self._with_instance(self._instance_restart))
        self.route("DELETE", rf"/instance/logout/{name}", self._with_instance(self._instance_logout))
        self.route("DELETE", rf"/instance/delete/{name}", self._with_instance(self._instance_delete))
        self.route("POST", rf"/webhook/set/{name}", self._with_instance(self._webhook_set))
        self.route("GET", rf"/webhook/find/{name}", self._with_instance(self._webhook_find))
        self.route("POST", rf"/message/sendText/{name}", self._with_instance(self._send_text))
        self.route("POST", rf"/message/sendMedia/{name}", self._with_instance(self._send_media))
        self.route("POST", rf"/message/sendSticker/{name}", self._with_instance(self._send_sticker))
        self.route("POST", rf"/chat/markMessageAsRead/{name}", self._with_instance(self._mark_read))
        self.route("POST", rf"/_fake/scan/{name}", self._control(lambda name, body: self.scan(name, **body)))
        self.route("POST", rf"/_fake/qr_refresh/{name}", self._control(lambda name, body: self.qr_refresh(name)))
        self.route("POST", rf"/_fake/inbound/{name}", self._control(lambda name, body: self.inbound(name, **body)))
        self.route("POST", rf"/_fake/status/{name}", self._control(lambda name, body: self.status_emit(name, **body)))
        self.route(
            "POST", rf"/_fake/disconnect/{name}", self._control(lambda name, body: self.disconnect(name, **body))
        )
        self.route("POST", rf"/_fake/qr_limit/{name}", self._control(lambda name, body: self.qr_limit_reach(name)))
        self.route("GET", r"/_fake/instances", self._instances_dump)

    # --- errors and guards -------------------------------------------------------------------------
    def error_response(self, status: int) -> FakeResponse:
        """Evolution's envelope for an injected failure (its error middleware in src/main.ts)."""
        message = "Unauthorized" if status == 401 else [HTTPStatus(status).phrase]
        return _error(status, message)

    def not_found(self, request: FakeRequest) -> FakeResponse:
        return _error(404, [f"Cannot {request.method} {request.path}"])

    def _key_accepted(self, request: FakeRequest, instance: FakeInstance | None = None) -> bool:
        key = request.header("apikey")
        if not key:
            return False
        if _same(key, self.api_key):
            return True
        return instance is not None and _same(key, instance.token)

    def _unauthorized(self) -> FakeResponse:
        return _error(401, "Unauthorized")  # a string here, an array everywhere else (auth.guard.ts)

    def _with_instance(self, handler):
        """Run `handler(request, instance)` behind Evolution's guards: instance exists, then apikey."""

        def guarded(request: FakeRequest) -> FakeResponse:
            name = request.params["name"]
            with self._state_lock:
                instance = self.instances.get(name)
            if instance is None:
                return _error(404, [f'The "{name}" instance does not exist'])
            if not self._key_accepted(request, instance):
                return self._unauthorized()
            return handler(request, instance)

        return guarded

    def _control(self, action):
        def handle(request: FakeRequest) -> FakeResponse:
            try:
                body = request.json() or {}
                result = action(request.params["name"], body)
            except KeyError as error:
                return FakeResponse.json(404, {"error": f"No instance {error}"})
            except (TypeError, ValueError) as error:
                return FakeResponse.json(409, {"error": str(error)})
            return FakeResponse.json(200, result if result is not None else {"ok": True})

        return handle

    def _instance(self, name: str) -> FakeInstance:
        with self._state_lock:
            return self.instances[name]

    # --- instances ---------------------------------------------------------------------------------
    def _welcome(self, request: FakeRequest) -> FakeResponse:
        return FakeResponse.json(
            200,
            {
                "status": 200,
                "message": "Welcome to the Evolution API, it is working!",
                "version": "2.3.6",
                "clientName": "evolution_exchange",
                "manager": f"{self.url}/manager",
                "documentation": "https://doc.evolution-api.com",
                "whatsappWebVersion": "2.3000.1027934701",
            },
        )

    def _instance_create(self, request: FakeRequest) -> FakeResponse:
        try:
            body = request.json()
        except ValueError:
            return _error(400, ["Unexpected token in JSON"])
        if not isinstance(body, dict) or not body.get("instanceName"):
            return _error(400, [['instance requires property "instanceName"']])
        name = str(body["instanceName"])
        with self._state_lock:
            if name in self.instances:
                return _error(403, [f'This name "{name}" is already in use.'])
        if not self._key_accepted(request):
            return self._unauthorized()
        if body.get("integration") not in INTEGRATIONS:
            # Without it channelController.init returns null (instance.controller.ts).
            return _error(400, ["Invalid integration"])
        instance = self._instance_build(name, body)
        with self._state_lock:
            self.instances[name] = instance
        qrcode = None
        if _true(body.get("qrcode")) and instance.integration == "WHATSAPP-BAILEYS":
            qrcode = self._connection_start(instance, phone=str(body.get("number") or ""))
        return FakeResponse.json(201, self._created_body(instance, qrcode))

    def _instance_build(self, name: str, body: dict) -> FakeInstance:
        webhook = body.get("webhook") or {}
        settings_keys = ("rejectCall", "msgCall", "groupsIgnore", "alwaysOnline", "readMessages", "readStatus")
        return FakeInstance(
            name=name,
            instance_id=str(uuid.uuid4()),
            token=str(body.get("token") or uuid.uuid4()).upper(),
            integration=body["integration"],
            webhook={
                "enabled": bool(webhook.get("url")) and webhook.get("enabled", True) is not False,
                "url": webhook.get("url", ""),
                "headers": dict(webhook.get("headers") or {}),
                "byEvents": _true(webhook.get("byEvents", False)),
                "base64": _true(webhook.get("base64", False)),
                "events": list(webhook.get("events") or []),
            },
            settings={key: body.get(key, "" if key == "msgCall" else False) for key in settings_keys},
        )

    def _created_body(self, instance: FakeInstance, qrcode: dict | None) -> dict:
        return {
            "instance": {
                "instanceName": instance.name,
                "instanceId": instance.instance_id,
                "integration": instance.integration,
                "webhookWaBusiness": None,
                "accessTokenWaBusiness": "",
                "status": instance.state,
            },
            "hash": instance.token,
            "webhook": {
                "webhookUrl": instance.webhook["url"] or None,
                "webhookHeaders": instance.webhook["headers"],
                "webhookByEvents": instance.webhook["byEvents"],
                "webhookBase64": instance.webhook["base64"],
            },
            "websocket": {},
            "rabbitmq": {},
            "nats": {},
            "sqs": {},
            "settings": instance.settings,
            "qrcode": qrcode,
        }

    def _instances_fetch(self, request: FakeRequest) -> FakeResponse:
        wanted = (request.query.get("instanceName") or [""])[0]
        with self._state_lock:
            instances = list(self.instances.values())
        if self._key_accepted(request):
            rows = [instance for instance in instances if not wanted or instance.name == wanted]
            if wanted and not rows:
                return _error(404, [f'Instance "{wanted}" not found'])
        else:
            # An instance token sees only its own instance (instance.controller.ts fetchInstances).
            key = request.header("apikey")
            rows = [instance for instance in instances if key and _same(key, instance.token)]
            if not rows:
                return self._unauthorized()
        return FakeResponse.json(200, [self._instance_row(instance) for instance in rows])

    def _instance_row(self, instance: FakeInstance) -> dict:
        return {
            "id": instance.instance_id,
            "name": instance.name,
            "connectionStatus": instance.state,
            "ownerJid": instance.owner_jid or None,
            "profileName": instance.profile_name if instance.number else None,
            "profilePicUrl": None,
            "integration": instance.integration,
            "number": instance.number or None,
            "token": instance.token,
            "clientName": "evolution_exchange",
            "disconnectionReasonCode": None,
            "createdAt": instance.created_at,
            "Setting": instance.settings,
            "_count": {"Message": len(instance.messages), "Contact": 0, "Chat": 0},
        }

    def _connect_failure(self) -> FakeResponse | None:
        # connect and restart catch their own errors and answer 200 (instance.controller.ts).
        if self.connect_error:
            return FakeResponse.json(200, {"error": True, "message": f"Error: {self.connect_error}"})
        return None

    def _instance_connect(self, request: FakeRequest, instance: FakeInstance) -> FakeResponse:
        failure = self._connect_failure()
        if failure:
            return failure
        phone = (request.query.get("number") or [""])[0]
        with self._state_lock:
            state = instance.state
        if state == "open":
            return FakeResponse.json(200, self._state_body(instance))
        if state == "connecting" and not phone:
            return FakeResponse.json(200, self._qr_body(instance))
        return FakeResponse.json(200, self._connection_start(instance, phone=phone))

    def _instance_state(self, request: FakeRequest, instance: FakeInstance) -> FakeResponse:
        return FakeResponse.json(200, self._state_body(instance))

    def _state_body(self, instance: FakeInstance) -> dict:
        return {"instance": {"instanceName": instance.name, "state": instance.state}}

    def _instance_restart(self, request: FakeRequest, instance: FakeInstance) -> FakeResponse:
        failure = self._connect_failure()
        if failure:
            return failure
        with self._state_lock:
            state, was_paired = instance.state, bool(instance.number)
        if state == "close":
            # BadRequestException throws a plain object, so `error.toString()` in the controller's
            # catch gives "[object Object]" (src/exceptions/400.exception.ts): reproduced as is.
            return FakeResponse.json(200, {"error": True, "message": "[object Object]"})
        if not was_paired:
            return FakeResponse.json(200, self._connection_start(instance, phone=""))
        self._reconnect(instance)
        return FakeResponse.json(200, {"pairingCode": None, "code": None, "base64": None, "count": 0})

    def _reconnect(self, instance: FakeInstance) -> None:
        with self._state_lock:
            instance.state = "connecting"
        self._emit(
            instance, "connection.update", {"instance": instance.name, "state": "connecting", "statusReason": 515}
        )
        with self._state_lock:
            instance.state = "open"
        self._emit(instance, "connection.update", self._open_data(instance), delay=2 * self.webhook_delay_seconds)

    def _instance_logout(self, request: FakeRequest, instance: FakeInstance) -> FakeResponse:
        if instance.state == "close":
            return _error(400, [f'The "{instance.name}" instance is not connected'])
        self._session_close(instance, status_reason=401)
        return FakeResponse.json(
            200, {"status": "SUCCESS", "error": False, "response": {"message": "Instance logged out"}}
        )

    def _instance_delete(self, request: FakeRequest, instance: FakeInstance) -> FakeResponse:
        if instance.state in {"open", "connecting"}:
            self._session_close(instance, status_reason=401)
        with self._state_lock:
            self.instances.pop(instance.name, None)
        return FakeResponse.json(
            200, {"status": "SUCCESS", "error": False, "response": {"message": "Instance deleted"}}
        )

    def _session_close(self, instance: FakeInstance, *, status_reason: int) -> None:
        with self._state_lock:
            instance.state = "close"
            instance.qr_code = instance.qr_image = instance.pairing_code = ""
            if status_reason == 401:
                instance.number = ""
        self._emit(
            instance, "connection.update", {"instance": instance.name, "state": "close", "statusReason": status_reason}
        )

    # --- QR codes and sessions ---------------------------------------------------------------------
    def _connection_start(self, instance: FakeInstance, *, phone: str) -> dict:
        """Start a session: a QR now (or after qr_delay_seconds), and a pairing code if `phone`."""
        with self._state_lock:
            instance.state = "connecting"
            if phone:
                instance.pairing_code = "".join(secrets.choice(PAIRING_ALPHABET) for _ in range(8))
            if self.qr_delay_seconds > 0 and not instance.qr_code:
                instance.qr_ready_at = time.monotonic() + self.qr_delay_seconds
                timer = threading.Timer(self.qr_delay_seconds, self._qr_issue, args=(instance,))
                timer.daemon = True
                timer.start()
                # Baileys has not produced a QR yet: Evolution answers only the count (issue #2385).
                return {"count": 0}
        self._qr_issue(instance)
        return self._qr_body(instance)

    def _qr_issue(self, instance: FakeInstance) -> None:
        # Baileys' QR payload: ref, noise key, identity key, adv secret, comma-separated.
        parts = [secrets.token_urlsafe(24), *(base64.b64encode(secrets.token_bytes(32)).decode() for _ in range(3))]
        code = "2@" + ",".join(parts)
        image = qr_data_uri(code)
        with self._state_lock:
            if instance.state != "connecting":
                return
            instance.qr_code, instance.qr_image, instance.qr_ready_at = code, image, 0.0
            instance.qr_count += 1
        self._emit(
            instance,
            "qrcode.updated",
            {
                "qrcode": {
                    "instance": instance.name,
                    "pairingCode": instance.pairing_code or None,
                    "code": code,
                    "base64": image,
                }
            },
        )
        if self.auto_scan_seconds > 0:
            timer = threading.Timer(self.auto_scan_seconds, self._scan_quietly, args=(instance.name,))
            timer.daemon = True
            timer.start()

    def _qr_body(self, instance: FakeInstance) -> dict:
        with self._state_lock:
            if not instance.qr_code:
                return {"count": 0}
            return {
                "pairingCode": instance.pairing_code or None,
                "code": instance.qr_code,
                "base64": instance.qr_image,
                "count": instance.qr_count,
            }

    def _scan_quietly(self, name: str) -> None:
        with contextlib.suppress(KeyError, ValueError):  # deleted or connected meanwhile
            self.scan(name)

    def scan(self, name: str, phone: str = "") -> dict:
        """Pretend the phone scanned the QR (or typed the pairing code): the session opens.

        Raise KeyError for an unknown instance, ValueError when it is not waiting for a scan.
        """
        instance = self._instance(name)
        digits = "".join(character for character in (phone or self._default_phone(name)) if character.isdigit())
        with self._state_lock:
            if instance.state != "connecting":
                raise ValueError(f"Instance {name!r} is {instance.state}, not waiting for a scan")
            instance.state, instance.number = "open", digits
            instance.qr_code = instance.qr_image = instance.pairing_code = ""
        data = self._open_data(instance)
        self._emit(instance, "connection.update", data)
        return data

    def qr_refresh(self, name: str) -> dict:
        """Issue a new QR for an instance waiting for a scan (`qrcode.updated`), as Baileys does while
        the QR stays unscanned; return it. Raise KeyError for an unknown instance, ValueError when
        it is not waiting for a scan."""
        instance = self._instance(name)
        with self._state_lock:
            if instance.state != "connecting":
                raise ValueError(f"Instance {name!r} is {instance.state}, not waiting for a scan")
        self._qr_issue(instance)
        return self._qr_body(instance)

    def _open_data(self, instance: FakeInstance) -> dict:
        return {
            "instance": instance.name,
            "wuid": instance.owner_jid,
            "profileName": instance.profile_name,
            "profilePictureUrl": None,
            "state": "open",
            "statusReason": 200,
        }

    @staticmethod
    def _default_phone(name: str) -> str:
        # A stable Brazilian mobile per instance, so several demo numbers never share an account.
        digest = int(hashlib.sha256(name.encode()).hexdigest(), 16)
        return f"55119{digest % 10**8:08d}"

    def disconnect(self, name: str, status_reason: int = 401) -> dict:
        """Close the session from the phone's side: 401 logged out, 403 banned, 428 connection closed."""
        instance = self._instance(name)
        self._session_close(instance, status_reason=int(status_reason))
        return self._state_body(instance)

    def qr_limit_reach(self, name: str) -> dict:
        """Emit what Evolution sends when QRCODE_LIMIT is hit: the limit message, then state refused."""
        instance = self._instance(name)
        with self._state_lock:
            instance.state = "close"
            instance.qr_code = instance.qr_image = instance.pairing_code = ""
        self._emit(
            instance, "qrcode.updated", {"message": "QR code limit reached, please login again", "statusCode": 500}
        )
        refused = {"instance": name, "state": "refused", "statusReason": 428}
        self._emit(instance, "connection.update", refused, delay=2 * self.webhook_delay_seconds)
        return refused

    # --- webhook configuration ---------------------------------------------------------------------
    def _webhook_set(self, request: FakeRequest, instance: FakeInstance) -> FakeResponse:
        try:
            webhook = (request.json() or {}).get("webhook")
        except (ValueError, AttributeError):
            webhook = None
        if not isinstance(webhook, dict):
            return _error(400, [['instance requires property "webhook"']])
        for required in ("enabled", "url"):
            if required not in webhook:
                return _error(400, [[f'instance.webhook requires property "{required}"']])
        with self._state_lock:
            instance.webhook = {
                "enabled": _true(webhook["enabled"]),
                "url": webhook["url"],
                "headers": dict(webhook.get("headers") or {}),
                "byEvents": _true(webhook.get("byEvents", False)),
                "base64": _true(webhook.get("base64", False)),
                "events": list(webhook.get("events") or []),
            }
        return FakeResponse.json(201, self._webhook_row(instance))

    def _webhook_find(self, request: FakeRequest, instance: FakeInstance) -> FakeResponse:
        return FakeResponse.json(200, self._webhook_row(instance) if instance.webhook.get("url") else None)

    def _webhook_row(self, instance: FakeInstance) -> dict:
        webhook = instance.webhook
        return {
            "id": f"cm{instance.instance_id.replace('-', '')[:23]}",
            "url": webhook["url"],
            "headers": webhook["headers"],
            "enabled": webhook["enabled"],
            "events": webhook["events"],
            "webhookByEvents": webhook["byEvents"],
            "webhookBase64": webhook["base64"],
            "createdAt": instance.created_at,
            "updatedAt": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "instanceId": instance.instance_id,
        }

    # --- sending -----------------------------------------------------------------------------------
    def _send_text(self, request: FakeRequest, instance: FakeInstance) -> FakeResponse:
        return self._send(request, instance, ("number", "text"), self._text_content)

    def _send_media(self, request: FakeRequest, instance: FakeInstance) -> FakeResponse:
        return self._send(request, instance, ("number", "mediatype", "media"), self._media_content)

    def _send_sticker(self, request: FakeRequest, instance: FakeInstance) -> FakeResponse:
        return self._send(request, instance, ("number", "sticker"), self._sticker_content)

    def _send(self, request: FakeRequest, instance: FakeInstance, required: tuple, content_for) -> FakeResponse:
        try:
            body = request.json()
        except ValueError:
            return _error(400, ["Unexpected token in JSON"])
        if not isinstance(body, dict):
            return _error(400, [["instance is not of a type(s) object"]])
        for name in required:
            if body.get(name) in (None, ""):
                # JSON-schema messages arrive nested in a second array (issue #2570).
                return _error(400, [[f'instance requires property "{name}"']])
        content = content_for(body)
        if isinstance(content, FakeResponse):
            return content
        if instance.state != "open":
            return _error(400, ["Error: Connection Closed"])
        jid = _jid(str(body["number"]))
        if not _is_on_whatsapp(jid):
            number = jid.split("@")[0]
            return _error(400, [{"jid": jid, "exists": False, "number": number}])
        message, message_type = content
        raw = self._message_raw(instance, jid, message, message_type, body.get("quoted"))
        with self._state_lock:
            instance.messages.append(raw)
        self._send_webhooks(instance, raw)
        return FakeResponse.json(201, raw)

    def _text_content(self, body: dict):
        return {"conversation": str(body["text"])}, "conversation"

    def _media_content(self, body: dict):
        mediatype, media = body["mediatype"], str(body["media"])
        if mediatype not in MEDIA_TYPES:
            return _error(400, [["instance.mediatype is not one of enum values: image,document,video,audio"]])
        is_url = media.startswith(("http://", "https://"))
        if not is_url and not _looks_like_base64(media):
            # A data: URI is neither a URL nor base64 to Evolution (sendMessage.controller.ts).
            return _error(400, ["Owned media must be a url or base64"])
        if not is_url and mediatype == "document" and not body.get("fileName"):
            return _error(400, ["For base64 the file name must be informed."])
        content = {
            "url": f"https://mmg.whatsapp.net/v/t62.7119-24/{secrets.token_hex(8)}.enc",
            "mimetype": body.get("mimetype") or _default_mimetype(mediatype),
            "fileLength": str(len(base64.b64decode(media)) if not is_url else 48213),
            "mediaKey": base64.b64encode(secrets.token_bytes(32)).decode(),
        }
        if body.get("caption"):
            content["caption"] = str(body["caption"])
        if mediatype == "document":
            content["fileName"] = str(body.get("fileName") or media.rstrip("/").rsplit("/", 1)[-1])
        if mediatype == "audio":
            content["ptt"] = False
        key = f"{mediatype}Message"
        return {key: content}, key

    def _sticker_content(self, body: dict):
        sticker = str(body["sticker"])
        if not sticker.startswith(("http://", "https://")) and not _looks_like_base64(sticker):
            return _error(400, ["Owned media must be a url or base64"])
        content = {
            "url": f"https://mmg.whatsapp.net/v/t62.15575-24/{secrets.token_hex(8)}.enc",
            "mimetype": "image/webp",
        }
        return {"stickerMessage": content}, "stickerMessage"

    def _message_raw(self, instance: FakeInstance, jid: str, message: dict, message_type: str, quoted) -> dict:
        context = None
        if isinstance(quoted, dict) and (quoted.get("key") or {}).get("id"):
            context = {"stanzaId": quoted["key"]["id"], "participant": jid, "quotedMessage": quoted.get("message")}
        return {
            "key": {"remoteJid": jid, "fromMe": True, "id": _message_id()},
            "pushName": "",
            "status": "PENDING",
            "message": message,
            "contextInfo": context,
            "messageType": message_type,
            "messageTimestamp": int(time.time()),
            "instanceId": instance.instance_id,
            "source": "unknown",
        }

    def _send_webhooks(self, instance: FakeInstance, raw: dict) -> None:
        """Emit what Evolution does after an API send: the echo, the fromMe upsert, then acks."""
        first = self.webhook_delay_seconds
        self._emit(instance, "send.message", raw, delay=first)
        upsert = {**raw, "status": "SERVER_ACK", "pushName": instance.profile_name}
        self._emit(instance, "messages.upsert", upsert, delay=first + 0.01)
        if not self.auto_status:
            return
        key_id = raw["key"]["id"]
        self.status_emit(instance.name, key_id, "DELIVERY_ACK", delay=first + self.status_delay_seconds)
        self.status_emit(instance.name, key_id, "READ", delay=first + 2 * self.status_delay_seconds)

    def status_emit(self, name: str, key_id: str, status: str = "DELIVERY_ACK", delay: float | None = None) -> dict:
        """Emit a messages.update for message `key_id` (DELIVERY_ACK, READ, PLAYED, ERROR, ...)."""
        instance = self._instance(name)
        if status not in STATUS_CODES and status != "DELETED":
            raise ValueError(f"Unknown status {status!r}")
        with self._state_lock:
            sent = next((raw for raw in instance.messages if raw["key"]["id"] == key_id), None)
        remote_jid = sent["key"]["remoteJid"] if sent else "5511912345678@s.whatsapp.net"
        data = {
            "keyId": key_id,
            "remoteJid": remote_jid,
            "fromMe": True,
            "participant": None,
            "status": status,
            "instanceId": instance.instance_id,
            "messageId": "cm" + secrets.token_hex(12)[:23],
        }
        self._emit(instance, "messages.update", data, delay=delay)
        return data

    def _mark_read(self, request: FakeRequest, instance: FakeInstance) -> FakeResponse:
        try:
            keys = (request.json() or {}).get("readMessages")
        except (ValueError, AttributeError):
            keys = None
        if not isinstance(keys, list):
            return _error(400, [['instance requires property "readMessages"']])
        for key in keys:
            if not isinstance(key, dict) or not {"remoteJid", "fromMe", "id"} <= key.keys():
                return _error(400, [['instance.readMessages[0] requires property "id"']])
        if instance.state != "open":
            return _error(500, ["Read messages fail", "Error: Connection Closed"])
        # Keys on @lid chats are dropped without a word (markMessageAsRead in the Baileys service).
        kept = [key for key in keys if key["remoteJid"].endswith(("@g.us", "@s.whatsapp.net"))]
        with self._state_lock:
            instance.reads.extend(kept)
        return FakeResponse.json(201, {"message": "Read messages", "read": "success"})

    # --- inbound messages --------------------------------------------------------------------------
    def inbound(
        self,
        name: str,
        variant: str = "text",
        sender: str = "5511912345678",
        text: str = "Oi, tudo bem?",
        push_name: str = "Maria Souza",
        timestamp: int | None = None,
    ) -> dict:
        """Emit a messages.upsert as WhatsApp delivers `variant` from `sender`; return its `data`.

        Raise KeyError for an unknown instance, ValueError for an unknown variant.
        """
        if variant not in INBOUND_VARIANTS:
            raise ValueError(f"Unknown variant {variant!r}; choose one of {', '.join(INBOUND_VARIANTS)}")
        instance = self._instance(name)
        sender_jid = _jid(sender)
        key = {"remoteJid": sender_jid, "fromMe": False, "id": _inbound_id()}
        message, message_type = _inbound_content(variant, text)
        key.update(_inbound_key_changes(variant, sender_jid))
        if instance.webhook.get("base64") and variant in _MEDIA_BYTES:
            message["base64"] = _MEDIA_BYTES[variant]()
        data = {
            "key": key,
            "pushName": push_name,
            "status": "DELIVERY_ACK",
            "message": message,
            "contextInfo": None,
            "messageType": message_type,
            "messageTimestamp": int(timestamp if timestamp is not None else time.time()),
            "instanceId": instance.instance_id,
            "source": "android",
        }
        self._emit(instance, "messages.upsert", data)
        return data

    # --- webhook delivery --------------------------------------------------------------------------
    def _emit(self, instance: FakeInstance, event: str, data: dict, delay: float | None = None) -> None:
        """Post `event` to the instance's webhook, as Evolution's webhook controller does."""
        with self._state_lock:
            webhook = dict(instance.webhook)
            owner_jid = instance.owner_jid
        config_name = event.replace(".", "_").upper()  # messages.upsert is MESSAGES_UPSERT in config
        if not webhook.get("enabled") or not webhook.get("url"):
            return
        if webhook["events"] and config_name not in webhook["events"]:
            return
        url = webhook["url"]
        if webhook["byEvents"]:
            url = url.rstrip("/") + "/" + config_name.lower().replace("_", "-")
        envelope = {
            "event": event,
            "instance": instance.name,
            "data": data,
            "destination": webhook["url"],
            "date_time": _local_time_with_z(),
            "sender": owner_jid or None,
            "server_url": self.server_url or self.url,
            "apikey": None,
        }
        headers = {"Content-Type": "application/json", **webhook["headers"]}
        self.webhook_send(url, json.dumps(envelope).encode(), headers, delay=delay)

    def _instances_dump(self, request: FakeRequest) -> FakeResponse:
        with self._state_lock:
            rows = [
                {
                    "name": instance.name,
                    "state": instance.state,
                    "number": instance.number,
                    "webhook": instance.webhook,
                    "qr_count": instance.qr_count,
                    "messages": instance.messages,
                    "reads": instance.reads,
                }
                for instance in self.instances.values()
            ]
        return FakeResponse.json(200, rows)


def _default_mimetype(mediatype: str) -> str:
    return {
        "image": "image/jpeg",
        "video": "video/mp4",
        "audio": "audio/mpeg",
        "document": "application/octet-stream",
    }[mediatype]


def _media_url(kind: str) -> str:
    return f"https://mmg.whatsapp.net/v/t62.7118-24/{kind}-{secrets.token_hex(6)}.enc?ccb=11-4&oh=01_Q5AaIfake"


def _inbound_content(variant: str, text: str) -> tuple[dict, str]:
    """Return the `message` object and `messageType` WhatsApp (via Evolution) gives `variant`."""
    media_common = {"mediaKey": base64.b64encode(b"k" * 32).decode(), "fileLength": "48213"}
    contents = {
        "text": ({"conversation": text, "messageContextInfo": {"deviceListMetadataVersion": 2}}, "conversation"),
        "extended_text": ({"extendedTextMessage": {"text": text, "previewType": "NONE"}}, "extendedTextMessage"),
        "image": (
            {
                "imageMessage": {
                    "url": _media_url("image"),
                    "mimetype": "image/png",
                    "caption": text,
                    **media_common,
                }
            },
            "imageMessage",
        ),
        "document": (
            {
                "documentMessage": {
                    "url": _media_url("document"),
                    "mimetype": "application/pdf",
                    "fileName": "invoice.pdf",
                    "caption": text,
                    "pageCount": 1,
                    **media_common,
                }
            },
            "documentMessage",
        ),
        "audio": (
            {
                "audioMessage": {
                    "url": _media_url("audio"),
                    "mimetype": "audio/ogg; codecs=opus",
                    "ptt": True,
                    "seconds": 4,
                    **media_common,
                }
            },
            "audioMessage",
        ),
        "video": (
            {
                "videoMessage": {
                    "url": _media_url("video"),
                    "mimetype": "video/mp4",
                    "caption": text,
                    "seconds": 3,
                    **media_common,
                }
            },
            "videoMessage",
        ),
        "sticker": (
            {
                "stickerMessage": {
                    "url": _media_url("sticker"),
                    "mimetype": "image/webp",
                    "isAnimated": False,
                    **media_common,
                }
            },
            "stickerMessage",
        ),
        "location": (
            {
                "locationMessage": {
                    "degreesLatitude": -23.5505,
                    "degreesLongitude": -46.6333,
                    "name": "Clinic",
                    "address": "Rua X, 10",
                }
            },
            "locationMessage",
        ),
        "reaction": (
            {"reactionMessage": {"key": {"remoteJid": "", "fromMe": True, "id": _message_id()}, "text": "👍"}},
            "reactionMessage",
        ),
    }
    if variant in contents:
        return contents[variant]
    return {"conversation": text}, "conversation"  # lid, group, group_lid and status_broadcast carry text


def _inbound_key_changes(variant: str, sender_jid: str) -> dict:
    """Return how `key` differs from a plain 1:1 message for `variant` (providers.md 1.6, 1.7)."""
    if variant == "lid":
        return {"remoteJid": LID_JID, "remoteJidAlt": sender_jid, "addressingMode": "lid"}
    if variant == "group":
        return {"remoteJid": GROUP_JID, "participant": sender_jid}
    if variant == "group_lid":
        return {"remoteJid": GROUP_JID, "participant": LID_JID, "participantAlt": sender_jid, "addressingMode": "lid"}
    if variant == "status_broadcast":
        return {"remoteJid": "status@broadcast", "participant": sender_jid}
    return {}


# Raw base64 (no data: prefix) of each media variant, as Evolution puts it in message.base64.
_MEDIA_BYTES = {
    "image": lambda: qr_png_base64("A photo from the fake Evolution server"),
    "document": lambda: base64.b64encode(_PDF).decode(),
    "audio": lambda: base64.b64encode(_OGG).decode(),
    "video": lambda: base64.b64encode(_MP4).decode(),
    "sticker": lambda: _WEBP_1X1,
}
