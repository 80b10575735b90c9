"""A fake Green API speaking its HTTP contract (../shared/reference/providers.md section 2) on loopback.

One port serves both the API host and the media host. Calls are
`/waInstance{idInstance}/{method}/{apiTokenInstance}`; an unknown instance or a wrong token answers
401 with an empty body, an unknown method or the wrong HTTP verb nginx's 404 page, bad parameters
400 "Validation failed. Details: ..." as text (the error shapes Green API's emulators reproduce; the
reference only says "key off HTTP status").

Options (keyword arguments, or `--set key=value` on `python -m providers.fakes green_api`):
- `id_instance` ("1101234567") and `api_token` ("fake-green-api-token"): the instance served;
- `wid` ("79990001122"): the instance's own WhatsApp number once authorized;
- `state` ("notAuthorized"): its first stateInstance; "authorized" skips the QR scan;
- `webhook_url`, `webhook_token` (""): settings to start with (setSettings changes them);
- `status_delay_seconds` (0.05): the gap between a send's echo and its sent/delivered/read statuses;
- `redelivery_seconds` (60): how long Green API waits before re-sending a notification our side did
  not answer with HTTP 200; `redelivery_attempts` (1440, i.e. 24 h at 60 s) caps it;
- `quota_sends` (unlimited): sends allowed before every send answers 466 (the Developer plan quota);
- `failing_suffix` ("0000"): sends to numbers ending with it get `failed` then `sent` (green-api
  issues #253), and checkWhatsapp says they have no account.

Control routes (no token, never faulted):
- POST /_fake/scan/{idInstance}: the phone scans the QR (or enters the pairing code): authorized;
- POST /_fake/inbound/{idInstance}: `{}` emits every incomingMessageReceived variant (INCOMING_VARIANTS:
  Green API's typeMessage names, plus "groupTextMessage" for a text in a group), or one:
  `{"variant": "imageMessage", "sender": "5511...", "group_id": "1203...@g.us", "text": "..."}`;
- POST /_fake/outgoing/{idInstance} `{"to": "5511...", "text": "..."}`: a message typed on the phone;
- POST /_fake/state/{idInstance} `{"stateInstance": "blocked"}`: the state changes on its own;
- POST /_fake/notify/{idInstance} `{"typeWebhook": "incomingCall"}`: a notification we do not track;
- GET /_fake/instances/{idInstance}: state, settings, sent messages, reads;
- GET /_fake/media/{name}: a file uploaded with sendFileByUpload (its `urlFile`).
The same actions are methods: scan(), inbound(), inbound_all(), phone_send(), state_set(), notify().
"""

import email.parser
import email.policy
import hmac
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import requests

from providers.fakes.qr import qr_png_base64
from providers.fakes.server import FakeProviderServer, FakeRequest, FakeResponse, SentWebhook

logger = logging.getLogger(__name__)

TEXT_TYPE = "text/plain; charset=utf-8"
NGINX_404 = (
    b"<html><head><title>404 Not Found</title></head><body><center><h1>404 Not Found</h1></center>"
    b"<hr><center>nginx</center></body></html>"
)
NGINX_5XX = (
    b"<html><head><title>%d</title></head><body><center><h1>%d</h1></center><hr><center>nginx</center></body></html>"
)

# Method -> HTTP verb, exactly as providers.md 2.2 (logout, reboot, qr, getStateInstance and
# getSettings are GET; deleteNotification is DELETE).
METHOD_VERBS = {
    "sendMessage": "POST",
    "sendFileByUrl": "POST",
    "sendFileByUpload": "POST",
    "getStateInstance": "GET",
    "getSettings": "GET",
    "setSettings": "POST",
    "qr": "GET",
    "getAuthorizationCode": "POST",
    "logout": "GET",
    "reboot": "GET",
    "readChat": "POST",
    "checkWhatsapp": "POST",
    "receiveNotification": "GET",
    "deleteNotification": "DELETE",
}
STATES = ("notAuthorized", "authorized", "blocked", "starting", "yellowCard", "sleepMode")
FLAG_SETTINGS = (
    "markIncomingMessagesReaded",
    "markIncomingMessagesReadedOnReply",
    "outgoingWebhook",
    "outgoingMessageWebhook",
    "outgoingAPIMessageWebhook",
    "stateWebhook",
    "incomingWebhook",
    "keepOnlineStatus",
    "pollMessageWebhook",
    "incomingCallWebhook",
    "incomingBlockWebhook",
    "editedMessageWebhook",
    "deletedMessageWebhook",
)
# incomingMessageReceived variants, in the order inbound_all() emits them; the last three are kinds
# an adapter may skip, sent so it proves it does.
INCOMING_VARIANTS = (
    "textMessage",
    "extendedTextMessage",
    "quotedMessage",
    "imageMessage",
    "videoMessage",
    "documentMessage",
    "audioMessage",
    "stickerMessage",
    "locationMessage",
    "groupTextMessage",
    "reactionMessage",
    "contactMessage",
    "pollMessage",
)
FILE_VARIANTS = {
    "imageMessage": ("photo.jpg", "image/jpeg"),
    "videoMessage": ("clip.mp4", "video/mp4"),
    "documentMessage": ("contract.pdf", "application/pdf"),
    "audioMessage": ("voice.ogg", "audio/ogg; codecs=opus"),
    "stickerMessage": ("sticker.webp", "image/webp"),
}
EXTENSION_TYPES = {
    "imageMessage": {".jpg", ".jpeg", ".png", ".gif"},
    "videoMessage": {".mp4", ".3gp", ".mov"},
    "audioMessage": {".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac"},
    "stickerMessage": {".webp"},
}


def _default_settings() -> dict:
    settings = dict.fromkeys(FLAG_SETTINGS, "no")
    settings.update(webhookUrl="", webhookUrlToken="", delaySendMessagesMilliseconds=5000)
    return settings


@dataclass
class FakeInstance:
    id_instance: str
    api_token: str
    wid: str
    state: str = "notAuthorized"
    settings: dict = field(default_factory=_default_settings)
    sent: list[dict] = field(default_factory=list)  # every send accepted: chatId, idMessage, kind, body
    reads: list[dict] = field(default_factory=list)  # every readChat body
    pairing_phones: list[int] = field(default_factory=list)
    held: list[dict] = field(default_factory=list)  # sends waiting for the instance to be authorized
    notifications: list[dict] = field(default_factory=list)  # the receiveNotification queue
    next_receipt_id: int = 1


class _InvalidParameterError(Exception):
    """A request parameter Green API would refuse with 400."""


class FakeGreenApiServer(FakeProviderServer):
    """Green API's instance methods, notifications and quirks; options in the module docstring."""

    provider_name = "green_api"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        id_instance: str = "1101234567",
        api_token: str = "fake-green-api-token",  # noqa: S107 (a fake server's documented default)
        wid: str = "79990001122",
        state: str = "notAuthorized",
        webhook_url: str = "",
        webhook_token: str = "",
        status_delay_seconds: float | str = 0.05,
        redelivery_seconds: float | str = 60,
        redelivery_attempts: int | str = 1440,
        quota_sends: int | str | None = None,
        failing_suffix: str = "0000",
        webhook_delay_seconds: float | str = 0.05,
    ):
        super().__init__(host=host, port=port, webhook_delay_seconds=float(webhook_delay_seconds))
        self.status_delay_seconds = float(status_delay_seconds)
        self.redelivery_seconds = float(redelivery_seconds)
        self.redelivery_attempts = int(redelivery_attempts)
        self.quota_sends = None if quota_sends in (None, "") else int(quota_sends)
        self.failing_suffix = failing_suffix
        self.sends_used = 0
        self.uploads: dict[str, tuple[bytes, str]] = {}
        self.instances: dict[str, FakeInstance] = {}
        self._stopped = threading.Event()
        first = self.instance_add(id_instance, api_token, wid=wid, state=state)
        first.settings.update(webhookUrl=webhook_url, webhookUrlToken=webhook_token)
        if webhook_url:
            notifications = ("incomingWebhook", "outgoingWebhook", "outgoingAPIMessageWebhook", "stateWebhook")
            first.settings.update(dict.fromkeys(notifications, "yes"))
        api = r"/waInstance(?P<id_instance>[^/]*)/(?P<method>[^/]+)/(?P<token>[^/]+)(?:/(?P<receipt>[^/]+))?/?"
        for verb in ("GET", "POST", "DELETE"):
            self.route(verb, api, self._api)
        self.route("POST", r"/_fake/scan/(?P<id_instance>\d+)", self._control(lambda i, body: self.scan(i)))
        self.route("POST", r"/_fake/inbound/(?P<id_instance>\d+)", self._control(self._inbound_route))
        self.route("POST", r"/_fake/outgoing/(?P<id_instance>\d+)", self._control(self._outgoing_route))
        self.route("POST", r"/_fake/state/(?P<id_instance>\d+)", self._control(self._state_route))
        self.route("POST", r"/_fake/notify/(?P<id_instance>\d+)", self._control(self._notify_route))
        self.route("GET", r"/_fake/instances/(?P<id_instance>\d+)", self._control(self._instance_route))
        self.route("GET", r"/_fake/media/(?P<name>[^/]+)", self._media_get)

    def instance_add(
        self, id_instance: str, api_token: str, *, wid: str = "79990001133", state: str = "notAuthorized"
    ) -> FakeInstance:
        """Serve another instance (each has its own token, state, settings and notifications)."""
        instance = FakeInstance(id_instance=str(id_instance), api_token=api_token, wid=wid, state=state)
        self.instances[instance.id_instance] = instance
        return instance

    def instance(self, id_instance: str | None = None) -> FakeInstance:
        """Return an instance by id; the first one by default."""
        return self.instances[str(id_instance)] if id_instance else next(iter(self.instances.values()))

    def stop(self) -> None:
        self._stopped.set()  # no redeliveries into a test that has finished
        super().stop()

    # --- errors ----------------------------------------------------------------------------------
    def error_response(self, status: int) -> FakeResponse:
        if status == 401:
            return FakeResponse(401, b"")
        if status == 404:
            return FakeResponse(404, NGINX_404, "text/html")
        if status == 466:
            return FakeResponse.json(466, self._quota_body())
        if status in (502, 503, 504):
            return FakeResponse(status, NGINX_5XX % (status, status), "text/html")
        reasons = {429: "Too Many Requests", 500: "Internal Server Error"}
        return FakeResponse(status, reasons.get(status, "Error").encode(), TEXT_TYPE)

    def _quota_body(self) -> dict:
        # Shape of docs /en/docs/api/466-error-example-body (providers.md 2.3).
        chats = sorted({item["chatId"] for instance in self.instances.values() for item in instance.sent})
        return {
            "invokeStatus": {"method": "sendmessage", "used": self.sends_used, "total": 0, "status": "QUOTE_ALLOWED"},
            "correspondentsStatus": {
                "method": "correspondents",
                "used": self.sends_used,
                "total": self.quota_sends,
                "status": "CORRESPONDENTS_QUOTE_EXCEEDED",
                "description": "Monthly quota has been exceeded. You can only send or receive messages from "
                f"these numbers: {', '.join(chats)}",
            },
        }

    @staticmethod
    def _invalid(details: str) -> FakeResponse:
        return FakeResponse(400, f"Validation failed. Details: {details}".encode(), TEXT_TYPE)

    # --- the API ---------------------------------------------------------------------------------
    def _api(self, request: FakeRequest) -> FakeResponse:
        method = request.params["method"]
        if method not in METHOD_VERBS:
            return FakeResponse(404, NGINX_404, "text/html")
        instance = self.instances.get(request.params["id_instance"])
        if instance is None or not hmac.compare_digest(request.params["token"].encode(), instance.api_token.encode()):
            return FakeResponse(401, b"")
        if request.method != METHOD_VERBS[method] or (method == "deleteNotification") != bool(
            request.params["receipt"]
        ):
            return FakeResponse(404, NGINX_404, "text/html")
        try:
            return getattr(self, f"_method_{method}")(instance, request)
        except _InvalidParameterError as error:
            return self._invalid(str(error))

    @staticmethod
    def _body(request: FakeRequest) -> dict:
        try:
            body = request.json()
        except ValueError as error:
            raise _InvalidParameterError(f"body is not JSON: {error}") from None
        if not isinstance(body, dict):
            raise _InvalidParameterError("body must be a JSON object")
        return body

    @staticmethod
    def _chat_id(body: dict) -> str:
        chat_id = body.get("chatId")
        if not isinstance(chat_id, str) or not chat_id:
            raise _InvalidParameterError("'chatId' is required")
        number, _, domain = chat_id.partition("@")
        is_person = domain == "c.us" and number.isdigit() and 6 <= len(number) <= 15
        is_group = domain == "g.us" and number.replace("-", "").isdigit()
        if not (is_person or is_group):
            raise _InvalidParameterError(
                "'chatId' must be one of the next formats: 'phone_number@c.us' or 'group_id@g.us'"
            )
        return chat_id

    def _method_getStateInstance(self, instance: FakeInstance, request: FakeRequest) -> FakeResponse:  # noqa: N802
        return FakeResponse.json(200, {"stateInstance": instance.state})

    def _method_getSettings(self, instance: FakeInstance, request: FakeRequest) -> FakeResponse:  # noqa: N802
        return FakeResponse.json(200, {"wid": self._wid(instance), **instance.settings})

    def _method_setSettings(self, instance: FakeInstance, request: FakeRequest) -> FakeResponse:  # noqa: N802
        body = self._body(request)
        if not body:
            raise _InvalidParameterError("at least one setting is required")
        for key, value in body.items():
            if key in ("webhookUrl", "webhookUrlToken"):
                if not isinstance(value, str):
                    raise _InvalidParameterError(f"'{key}' must be a string")
            elif key == "delaySendMessagesMilliseconds":
                if not isinstance(value, int):
                    raise _InvalidParameterError(f"'{key}' must be a number")
            elif key in FLAG_SETTINGS:
                if value not in ("yes", "no"):
                    raise _InvalidParameterError(f"'{key}' must be one of [yes, no]")
            else:
                raise _InvalidParameterError(f"'{key}' is not allowed")
        # Real Green API applies settings within minutes and reboots the instance; at once here.
        instance.settings.update(body)
        return FakeResponse.json(200, {"saveSettings": True})

    def _method_qr(self, instance: FakeInstance, request: FakeRequest) -> FakeResponse:
        if instance.state == "notAuthorized":
            # A fresh code each call, as the real QR rotates every ~20 s.
            code = f"green-api-fake:{instance.id_instance}:{secrets.token_hex(8)}"
            return FakeResponse.json(200, {"type": "qrCode", "message": qr_png_base64(code)})
        if instance.state in ("authorized", "yellowCard"):
            return FakeResponse.json(200, {"type": "alreadyLogged", "message": "instance account already authorized"})
        return FakeResponse.json(200, {"type": "error", "message": f"instance is {instance.state}, try again later"})

    def _method_getAuthorizationCode(self, instance: FakeInstance, request: FakeRequest) -> FakeResponse:  # noqa: N802
        phone = self._body(request).get("phoneNumber")
        if not isinstance(phone, int) or isinstance(phone, bool):
            raise _InvalidParameterError("'phoneNumber' must be a number")
        if instance.state != "notAuthorized":
            return FakeResponse.json(200, {"status": False, "code": ""})
        instance.pairing_phones.append(phone)
        alphabet = "ABCDEFGHJKLMNPQRSTVWXYZ23456789"
        return FakeResponse.json(200, {"status": True, "code": "".join(secrets.choice(alphabet) for _ in range(8))})

    def _method_logout(self, instance: FakeInstance, request: FakeRequest) -> FakeResponse:
        if instance.state not in ("authorized", "yellowCard"):
            return FakeResponse.json(200, {"isLogout": False})
        self.state_set("notAuthorized", instance.id_instance)
        return FakeResponse.json(200, {"isLogout": True})

    def _method_reboot(self, instance: FakeInstance, request: FakeRequest) -> FakeResponse:
        previous = instance.state if instance.state != "starting" else "authorized"
        self.state_set("starting", instance.id_instance)
        threading.Timer(self.status_delay_seconds, self.state_set, (previous, instance.id_instance)).start()
        return FakeResponse.json(200, {"isReboot": True})

    def _method_readChat(self, instance: FakeInstance, request: FakeRequest) -> FakeResponse:  # noqa: N802
        body = self._body(request)
        self._chat_id(body)
        instance.reads.append(body)
        return FakeResponse.json(200, {"setRead": True})

    def _method_checkWhatsapp(self, instance: FakeInstance, request: FakeRequest) -> FakeResponse:  # noqa: N802
        phone = self._body(request).get("phoneNumber")
        if not isinstance(phone, int) or isinstance(phone, bool):
            raise _InvalidParameterError("'phoneNumber' must be a number")
        return FakeResponse.json(200, {"existsWhatsapp": not str(phone).endswith(self.failing_suffix)})

    def _method_receiveNotification(self, instance: FakeInstance, request: FakeRequest) -> FakeResponse:  # noqa: N802
        if instance.settings["webhookUrl"]:
            # Polling and webhooks exclude each other (providers.md 2.4).
            text = f"Message cannot be received because custom webhook url is set for instance {instance.id_instance}"
            return FakeResponse(400, text.encode(), TEXT_TYPE)
        if not instance.notifications:
            return FakeResponse(200, b"null")  # the real call long-polls first; the fake answers at once
        return FakeResponse.json(200, instance.notifications[0])

    def _method_deleteNotification(self, instance: FakeInstance, request: FakeRequest) -> FakeResponse:  # noqa: N802
        receipt = request.params["receipt"]
        if not receipt.isdigit():
            return FakeResponse(400, b"Parameter receiptId must be a Number!", TEXT_TYPE)
        kept = [item for item in instance.notifications if item["receiptId"] != int(receipt)]
        found = len(kept) != len(instance.notifications)
        instance.notifications[:] = kept
        return FakeResponse.json(200, {"result": found})

    # --- sending ---------------------------------------------------------------------------------
    def _method_sendMessage(self, instance: FakeInstance, request: FakeRequest) -> FakeResponse:  # noqa: N802
        body = self._body(request)
        chat_id = self._chat_id(body)
        message = body.get("message")
        if not isinstance(message, str) or not message:
            raise _InvalidParameterError("'message' is required")
        message_data = {"typeMessage": "textMessage", "textMessageData": {"textMessage": message}}
        if body.get("quotedMessageId"):
            message_data = {
                "typeMessage": "quotedMessage",
                "extendedTextMessageData": {"text": message, "stanzaId": body["quotedMessageId"]},
                "quotedMessage": {"stanzaId": body["quotedMessageId"], "typeMessage": "textMessage"},
            }
        return self._accept_send(instance, chat_id, "text", body, message_data)

    def _method_sendFileByUrl(self, instance: FakeInstance, request: FakeRequest) -> FakeResponse:  # noqa: N802
        body = self._body(request)
        chat_id = self._chat_id(body)
        url_file, file_name = body.get("urlFile"), body.get("fileName")
        if not isinstance(url_file, str) or not url_file.startswith(("http://", "https://")):
            raise _InvalidParameterError("'urlFile' must be a valid uri")
        if not isinstance(file_name, str) or not PurePosixPath(file_name).suffix:
            raise _InvalidParameterError("'fileName' is required and must have an extension")
        message_data = self._file_message_data(file_name, url_file, body.get("caption", ""))
        return self._accept_send(instance, chat_id, "file_url", body, message_data)

    def _method_sendFileByUpload(self, instance: FakeInstance, request: FakeRequest) -> FakeResponse:  # noqa: N802
        fields, files = _multipart(request)
        if "file" not in files:
            raise _InvalidParameterError("'file' is required")
        chat_id = self._chat_id(fields)
        upload_name, content, mime_type = files["file"]
        file_name = fields.get("fileName") or upload_name
        if not PurePosixPath(file_name).suffix:
            raise _InvalidParameterError("'fileName' must have an extension")
        stored_name = f"{secrets.token_hex(8)}-{file_name}"
        self.uploads[stored_name] = (content, mime_type)
        url_file = f"{self.url}/_fake/media/{stored_name}"
        body = {**fields, "fileName": file_name, "fileBytes": len(content), "mimeType": mime_type}
        message_data = self._file_message_data(file_name, url_file, fields.get("caption", ""), mime_type)
        response = self._accept_send(instance, chat_id, "file_upload", body, message_data)
        if response.status == 200:
            payload = json.loads(response.body)
            response = FakeResponse.json(200, {**payload, "urlFile": url_file})
        return response

    @staticmethod
    def _file_message_data(file_name: str, url: str, caption: str, mime_type: str = "") -> dict:
        extension = PurePosixPath(file_name).suffix.lower()
        kind = next((kind for kind, suffixes in EXTENSION_TYPES.items() if extension in suffixes), "documentMessage")
        file_data = {"downloadUrl": url, "caption": caption, "fileName": file_name, "jpegThumbnail": ""}
        file_data.update(mimeType=mime_type, isForwarded=False, forwardingScore=0)
        return {"typeMessage": kind, "fileMessageData": file_data}

    def _accept_send(self, instance, chat_id: str, kind: str, body: dict, message_data: dict) -> FakeResponse:
        with self._lock:
            if self.quota_sends is not None and self.sends_used >= self.quota_sends:
                return self.error_response(466)
            self.sends_used += 1
        message_id = secrets.token_hex(10).upper()  # 20 hex characters, like 3EB0C767D097B7C7C030
        sent = {"idMessage": message_id, "chatId": chat_id, "kind": kind, "body": body, "messageData": message_data}
        instance.sent.append(sent)
        if instance.state in ("authorized", "yellowCard"):
            self._after_send(instance, sent)
        else:
            instance.held.append(sent)  # Green API queues sends until the phone is connected
        return FakeResponse.json(200, {"idMessage": message_id})

    def _after_send(self, instance: FakeInstance, sent: dict, *, later_by: float = 0.0) -> None:
        """Emit what Green API emits after a send: the echo, then its statuses in order."""
        echo = self._message_notification(
            instance,
            "outgoingAPIMessageReceived",
            message_id=sent["idMessage"],
            chat_id=sent["chatId"],
            sender=self._wid(instance),
            sender_name="Conversa",
            message_data=sent["messageData"],
        )
        start = self.webhook_delay_seconds + later_by
        self._notify(instance, echo, flag="outgoingAPIMessageWebhook", delay=start)
        if sent["chatId"].split("@")[0].endswith(self.failing_suffix):
            # green-api/issues#253: `sent` may arrive after `failed` for the same message.
            statuses = [("failed", "The message was not sent: the recipient is not on WhatsApp"), ("sent", "")]
        else:
            statuses = [("sent", ""), ("delivered", ""), ("read", "")]
        for step, (status, description) in enumerate(statuses, start=1):
            notification = self._status_notification(instance, sent, status, description)
            # failed/noAccount come even with outgoingWebhook off (providers.md 2.4).
            flag = None if status in ("failed", "noAccount") else "outgoingWebhook"
            delay = start + step * self.status_delay_seconds
            self._notify(instance, notification, flag=flag, delay=delay)

    # --- notifications ---------------------------------------------------------------------------
    def _wid(self, instance: FakeInstance) -> str:
        return f"{instance.wid}@c.us" if instance.state in ("authorized", "yellowCard") else ""

    def _instance_data(self, instance: FakeInstance) -> dict:
        return {"idInstance": int(instance.id_instance), "wid": self._wid(instance), "typeInstance": "whatsapp"}

    def _message_notification(
        self, instance, type_webhook: str, *, message_id: str, chat_id: str, sender: str, sender_name: str, message_data
    ) -> dict:
        return {
            "typeWebhook": type_webhook,
            "instanceData": self._instance_data(instance),
            "timestamp": int(time.time()),
            "idMessage": message_id,
            "senderData": {
                "chatId": chat_id,
                "sender": sender,
                "chatName": sender_name if chat_id.endswith("@c.us") else "Team chat",
                "senderName": sender_name,
                "senderContactName": sender_name,
            },
            "messageData": message_data,
        }

    def _status_notification(self, instance: FakeInstance, sent: dict, status: str, description: str) -> dict:
        notification = {
            "typeWebhook": "outgoingMessageStatus",
            "chatId": sent["chatId"],
            "instanceData": self._instance_data(instance),
            "timestamp": int(time.time()),
            "idMessage": sent["idMessage"],
            "status": status,
            "sendByApi": True,
        }
        if description:
            notification["description"] = description
        return notification

    def _notify(self, instance: FakeInstance, notification: dict, *, flag: str | None, delay: float | None = None):
        """Deliver a notification to webhookUrl, or queue it for receiveNotification when there is none."""
        if flag and instance.settings.get(flag) != "yes":
            return
        url = instance.settings["webhookUrl"]
        if not url:
            instance.notifications.append({"receiptId": instance.next_receipt_id, "body": notification})
            instance.next_receipt_id += 1
            return
        headers = {"Content-Type": "application/json"}
        if instance.settings["webhookUrlToken"]:
            headers["Authorization"] = f"Bearer {instance.settings['webhookUrlToken']}"
        self.webhook_send(url, json.dumps(notification).encode(), headers, delay=delay)

    def _webhook_post(self, url: str, body: bytes, headers: dict[str, str], attempt: int = 1) -> None:
        # Green API re-sends the same notification until it gets HTTP 200 (every ~60 s, for 24 h;
        # providers.md 2.4, docs working-with-incomming-webhooks). Head-of-line blocking of the
        # per-instance queue is not reproduced: later notifications still go out meanwhile.
        try:
            status = self._webhook_session.post(url, data=body, headers=headers, timeout=10).status_code
        except requests.RequestException as error:
            logger.warning("fake green_api: webhook to %s failed: %s", url, error)
            status = None
        with self._lock:
            self.webhooks.append(SentWebhook(url=url, body=body, headers=headers, status=status))
        if status != 200 and attempt < self.redelivery_attempts and not self._stopped.is_set():
            threading.Thread(target=self._redeliver, args=(url, body, headers, attempt + 1), daemon=True).start()

    def _redeliver(self, url: str, body: bytes, headers: dict[str, str], attempt: int) -> None:
        if not self._stopped.wait(self.redelivery_seconds):
            self._webhook_post(url, body, headers, attempt)

    # --- simulated phone and contacts ------------------------------------------------------------
    def scan(self, id_instance: str | None = None) -> dict:
        """The phone scans the QR code (or enters the pairing code): the instance is authorized."""
        instance = self.instance(id_instance)
        self.state_set("authorized", instance.id_instance)
        held, instance.held = instance.held, []
        for sent in held:
            # After the stateInstanceChanged just queued: the phone connects, then they go out.
            self._after_send(instance, sent, later_by=self.status_delay_seconds)
        return {"stateInstance": instance.state, "wid": self._wid(instance)}

    def state_set(self, state: str, id_instance: str | None = None) -> dict:
        """Change the instance's state and send stateInstanceChanged."""
        if state not in STATES:
            raise ValueError(f"stateInstance must be one of {', '.join(STATES)}")
        instance = self.instance(id_instance)
        instance.state = state
        notification = {
            "typeWebhook": "stateInstanceChanged",
            "instanceData": self._instance_data(instance),
            "timestamp": int(time.time()),
            "stateInstance": state,
        }
        self._notify(instance, notification, flag="stateWebhook")
        return notification

    def inbound(
        self,
        variant: str = "textMessage",
        *,
        id_instance: str | None = None,
        sender: str = "5511912345678",
        group_id: str = "",
        text: str = "",
        sender_name: str = "Maria Silva",
        quoted_message_id: str = "",
    ) -> dict:
        """A contact sends a message of `variant` (one of INCOMING_VARIANTS); return the notification."""
        if variant not in INCOMING_VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(INCOMING_VARIANTS)}")
        instance = self.instance(id_instance)
        sender_id = sender if "@" in sender else f"{sender}@c.us"
        if variant == "groupTextMessage":
            group_id = group_id or "120363012345678901@g.us"
        message_data = _incoming_message_data(variant, text, quoted_message_id or secrets.token_hex(10).upper(), self)
        notification = self._message_notification(
            instance,
            "incomingMessageReceived",
            message_id=secrets.token_hex(16).upper(),
            chat_id=group_id or sender_id,
            sender=sender_id,
            sender_name=sender_name,
            message_data=message_data,
        )
        self._notify(instance, notification, flag="incomingWebhook")
        return notification

    def inbound_all(self, id_instance: str | None = None) -> list[dict]:
        """Send one incoming message of every variant, in INCOMING_VARIANTS order, a little apart."""
        notifications = []
        for variant in INCOMING_VARIANTS:
            notifications.append(self.inbound(variant, id_instance=id_instance))
            time.sleep(0.005)  # keeps their delivery threads, hence arrival, in order
        return notifications

    def phone_send(self, to: str, text: str, *, id_instance: str | None = None) -> dict:
        """The owner types a message on the phone: outgoingMessageReceived, then its statuses."""
        instance = self.instance(id_instance)
        chat_id = to if "@" in to else f"{''.join(c for c in to if c.isdigit())}@c.us"
        message_data = {"typeMessage": "textMessage", "textMessageData": {"textMessage": text}}
        notification = self._message_notification(
            instance,
            "outgoingMessageReceived",
            message_id=secrets.token_hex(10).upper(),
            chat_id=chat_id,
            sender=self._wid(instance),
            sender_name="Conversa",
            message_data=message_data,
        )
        self._notify(instance, notification, flag="outgoingMessageWebhook")
        return notification

    def notify(self, type_webhook: str, *, id_instance: str | None = None) -> dict:
        """Send a notification of a kind Conversa does not track (incomingCall, quotaExceeded...)."""
        instance = self.instance(id_instance)
        extras = {
            "incomingCall": {"from": "5511912345678@c.us", "status": "offer", "idMessage": secrets.token_hex(8)},
            "quotaExceeded": {"quotaData": self._quota_body()["correspondentsStatus"]},
            "deviceInfo": {"deviceData": {"platform": "android", "deviceManufacturer": "Fake", "battery": 80}},
            "incomingBlock": {"chatId": "5511912345678@c.us", "status": "blocked"},
        }
        notification = {
            "typeWebhook": type_webhook,
            "instanceData": self._instance_data(instance),
            "timestamp": int(time.time()),
            **extras.get(type_webhook, {}),
        }
        self._notify(instance, notification, flag=None)
        return notification

    # --- control routes --------------------------------------------------------------------------
    def _control(self, action):
        def handler(request: FakeRequest) -> FakeResponse:
            id_instance = request.params["id_instance"]
            if id_instance not in self.instances:
                return FakeResponse.json(404, {"error": f"no instance {id_instance}"})
            try:
                body = request.json() if request.body else {}
                return FakeResponse.json(200, action(id_instance, body or {}))
            except (ValueError, TypeError) as error:
                return FakeResponse.json(400, {"error": str(error)})

        return handler

    def _inbound_route(self, id_instance: str, body: dict) -> dict:
        if "variant" not in body:
            return {"notifications": self.inbound_all(id_instance)}
        options = {key: str(body[key]) for key in ("sender", "group_id", "text", "sender_name") if key in body}
        return self.inbound(str(body["variant"]), id_instance=id_instance, **options)

    def _outgoing_route(self, id_instance: str, body: dict) -> dict:
        return self.phone_send(str(body.get("to", "")), str(body.get("text", "")), id_instance=id_instance)

    def _state_route(self, id_instance: str, body: dict) -> dict:
        return self.state_set(str(body.get("stateInstance", "")), id_instance)

    def _notify_route(self, id_instance: str, body: dict) -> dict:
        return self.notify(str(body.get("typeWebhook", "incomingCall")), id_instance=id_instance)

    def _instance_route(self, id_instance: str, body: dict) -> dict:
        instance = self.instances[id_instance]
        return {
            "stateInstance": instance.state,
            "settings": instance.settings,
            "sent": [{key: item[key] for key in ("idMessage", "chatId", "kind")} for item in instance.sent],
            "reads": instance.reads,
            "notificationsQueued": len(instance.notifications),
        }

    def _media_get(self, request: FakeRequest) -> FakeResponse:
        upload = self.uploads.get(request.params["name"])
        if upload is None:
            return FakeResponse(404, NGINX_404, "text/html")
        return FakeResponse(200, upload[0], upload[1])


def _incoming_message_data(variant: str, text: str, quoted_id: str, server: FakeGreenApiServer) -> dict:
    """Return messageData for one incomingMessageReceived variant, shaped as providers.md 2.4."""
    if variant in ("textMessage", "groupTextMessage"):
        return {"typeMessage": "textMessage", "textMessageData": {"textMessage": text or "Hello!"}}
    if variant == "extendedTextMessage":
        link_preview = {"description": "Example site", "title": "Example", "previewType": "None", "jpegThumbnail": ""}
        data = {"text": text or "Look: https://example.com", **link_preview, "isForwarded": False}
        return {"typeMessage": "extendedTextMessage", "extendedTextMessageData": data}
    if variant in ("quotedMessage", "reactionMessage"):
        quoted = {"stanzaId": quoted_id, "participant": "79990001122@c.us", "typeMessage": "textMessage"}
        default = "Yes, that works" if variant == "quotedMessage" else "\U0001f44d"
        reply = {"text": text or default, "stanzaId": quoted_id, "participant": "79990001122@c.us"}
        quoted["textMessage"] = "Can we meet at 3?"
        return {"typeMessage": variant, "extendedTextMessageData": reply, "quotedMessage": quoted}
    if variant in FILE_VARIANTS:
        file_name, mime_type = FILE_VARIANTS[variant]
        file_data = {
            "downloadUrl": f"{server.url}/_fake/media/{secrets.token_hex(8)}-{file_name}",
            "caption": text or ("" if variant in ("audioMessage", "stickerMessage") else f"Here is {file_name}"),
            "fileName": file_name,
            "jpegThumbnail": "",
            "mimeType": mime_type,
            "isForwarded": False,
            "forwardingScore": 0,
        }
        return {"typeMessage": variant, "fileMessageData": file_data}
    if variant == "locationMessage":
        location = {"nameLocation": "Paulista Office", "address": "Av. Paulista, 1000, São Paulo"}
        location.update(latitude=-23.5614, longitude=-46.6559, jpegThumbnail="")
        return {"typeMessage": "locationMessage", "locationMessageData": location}
    if variant == "contactMessage":
        vcard = "BEGIN:VCARD\nVERSION:3.0\nFN:Joao\nTEL;waid=5511988887777:+55 11 98888-7777\nEND:VCARD"
        return {"typeMessage": "contactMessage", "contactMessageData": {"displayName": "Joao", "vcard": vcard}}
    poll = {"name": "Lunch?", "options": [{"optionName": "Yes"}, {"optionName": "No"}], "multipleAnswers": False}
    return {"typeMessage": "pollMessage", "pollMessageData": poll}


def _multipart(request: FakeRequest) -> tuple[dict[str, str], dict[str, tuple[str, bytes, str]]]:
    """Split a multipart/form-data body into text fields and files (name -> filename, bytes, type)."""
    content_type = request.header("Content-Type")
    if not content_type.startswith("multipart/form-data"):
        raise _InvalidParameterError("sendFileByUpload expects multipart/form-data")
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.body)
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, bytes, str]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if part.get_filename() is not None:
            files[name] = (part.get_filename(), payload, part.get_content_type())
        else:
            fields[name] = payload.decode()
    return fields, files
