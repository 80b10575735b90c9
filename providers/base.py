"""The one interface every WhatsApp provider adapter implements, and the data it speaks.

Adapters never touch the database: they take a `ProviderTarget` (everything needed to reach one
number), return the dataclasses below, and raise `ProviderError`, which says whether a failure is
permanent (stop retrying) or temporary (retry, honouring `retry_after`).
"""

import abc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

# Normalized connection states; the same strings as crm.WhatsAppNumber.State.
STATE_CONNECTING = "connecting"
STATE_WAITING_FOR_QR_SCAN = "waiting_for_qr_scan"
STATE_CONNECTED = "connected"
STATE_DISCONNECTED = "disconnected"
STATE_LOGGED_OUT = "logged_out"
STATE_BANNED = "banned"
CONNECTION_STATES = frozenset(
    {STATE_CONNECTING, STATE_WAITING_FOR_QR_SCAN, STATE_CONNECTED, STATE_DISCONNECTED, STATE_LOGGED_OUT, STATE_BANNED}
)

# Normalized outbound statuses, the same strings as messaging.Message.Status.
DeliveryStatus = Literal["sent", "delivered", "read", "failed"]
MediaKind = Literal["image", "document", "audio", "video", "sticker"]
MessageType = Literal["text", "image", "audio", "video", "document", "location", "sticker"]


class ProviderError(Exception):
    """A provider call failed.

    `permanent` failures (a bad number, a 4xx) must not be retried; temporary ones (5xx, 429,
    timeouts, refused connections, an open circuit) may be, after `retry_after` seconds if given.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        retry_after: float | None = None,
        status_code: int | None = None,
        code: str | None = None,
        circuit_open: bool = False,
        body: str = "",
    ):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.retry_after = retry_after
        self.status_code = status_code
        self.code = code
        self.circuit_open = circuit_open
        self.body = body  # the provider's response text, for adapters that classify by error code


class UnknownProviderError(LookupError):
    """No adapter is registered under that provider name."""


class WebhookRejectedError(Exception):
    """A webhook did not prove where it comes from, or cannot be read; answer with `status`."""

    def __init__(self, message: str, *, status: int = 403):
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class ProviderTarget:
    """Everything an adapter needs to reach one number; built from the database by the caller."""

    provider: str
    instance_name: str
    base_url: str = ""
    api_key: str = ""
    credentials: dict = field(default_factory=dict)
    webhook_url: str = ""
    webhook_secret: str = ""
    # Calls sharing a breaker key share one circuit: one per provider server, or per provider.
    breaker_key: str = ""


@dataclass(frozen=True)
class MediaPayload:
    kind: MediaKind
    url: str = ""
    content: bytes = b""
    filename: str = ""
    mime_type: str = ""
    caption: str = ""


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str
    # The recipient as the provider resolved it (Meta's wa_id, Brazil's ninth digit); may be empty.
    recipient_id: str = ""
    raw: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ConnectResult:
    state: str
    qr_image: str = ""  # a data: URI of a PNG, ready for <img src>
    qr_code: str = ""  # the raw string the QR encodes
    pairing_code: str = ""


@dataclass(frozen=True)
class HealthResult:
    is_healthy: bool
    latency_ms: int
    error: str = ""
    # The provider answered and refused (a wrong key, a 4xx): a configuration problem, not a dead
    # server, so the health beat does not open the circuit for it.
    permanent: bool = False


@dataclass(frozen=True)
class WebhookRequest:
    """A provider's HTTP request as it arrived: raw bytes, because signatures are over them."""

    method: str
    url: str  # the full public URL the provider called (Twilio signs it)
    headers: dict[str, str]
    body: bytes
    query: dict[str, list[str]] = field(default_factory=dict)

    def header(self, name: str) -> str:
        lowered = name.lower()
        return next((value for key, value in self.headers.items() if key.lower() == lowered), "")


@dataclass(frozen=True)
class InboundMessage:
    """A message that appeared in a chat: from the contact, or our own echoed back (`from_me`)."""

    provider_message_id: str
    chat_id: str  # the conversation as the provider names it: a person's id or a group's
    sender_ids: tuple[str, ...]  # every id of the sender, best first (`@lid` and phone, say)
    timestamp: datetime
    type: MessageType = "text"
    text: str = ""
    sender_name: str = ""
    from_me: bool = False
    is_group: bool = False
    media_url: str = ""
    media_base64: str = ""
    media_mime_type: str = ""
    media_filename: str = ""
    latitude: float | None = None
    longitude: float | None = None
    quoted_message_id: str = ""
    raw: dict = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class StatusUpdate:
    provider_message_id: str
    status: DeliveryStatus
    timestamp: datetime
    error_code: str = ""
    error_message: str = ""


@dataclass(frozen=True)
class ConnectionUpdate:
    state: str
    phone: str = ""
    reason: str = ""


@dataclass(frozen=True)
class QrUpdate:
    qr_image: str = ""
    qr_code: str = ""
    pairing_code: str = ""


def health_measure(probe: Callable[[], str]) -> HealthResult:
    """Time `probe` and report it as a HealthResult; never raise.

    `probe` returns "" when healthy or the reason it is not; a ProviderError (or any other
    exception, since a health check reports failures rather than raising them) means unhealthy.
    """
    started = time.monotonic()
    permanent = False
    try:
        problem = probe()
    except ProviderError as error:
        problem, permanent = error.message, error.permanent
    except Exception as error:
        logging.getLogger(__name__).warning("health probe failed unexpectedly: %r", error)
        problem = f"Unexpected error: {error}"
    latency_ms = round((time.monotonic() - started) * 1000)
    return HealthResult(
        is_healthy=not problem, latency_ms=latency_ms, error=problem, permanent=bool(problem) and permanent
    )


WebhookEvent = InboundMessage | StatusUpdate | ConnectionUpdate | QrUpdate


@dataclass(frozen=True)
class WebhookResult:
    """What a webhook carried, and what to answer the provider (Twilio wants TwiML, Meta a challenge)."""

    events: list[WebhookEvent]
    instance_name: str = ""
    response_body: bytes = b""
    response_content_type: str = "application/json"


class ProviderAdapter(abc.ABC):
    """One WhatsApp provider. Subclasses are registered by name in providers.registry."""

    name: str

    @abc.abstractmethod
    def provision(self, target: ProviderTarget) -> ConnectResult:
        """Create the number's instance on the provider, pointing its webhooks at us."""

    @abc.abstractmethod
    def connect(self, target: ProviderTarget, *, phone: str = "") -> ConnectResult:
        """Start a connection: a QR code, or a pairing code when `phone` is given."""

    @abc.abstractmethod
    def connection_state(self, target: ProviderTarget) -> str:
        """Return the number's normalized connection state."""

    @abc.abstractmethod
    def send_text(self, target: ProviderTarget, *, to: str, text: str, quoted_message_id: str = "") -> SendResult:
        """Send a text message to `to` (an E.164 phone or the provider's chat id)."""

    @abc.abstractmethod
    def send_media(self, target: ProviderTarget, *, to: str, media: MediaPayload) -> SendResult:
        """Send an image, document, audio or video by URL or uploaded bytes, with its caption."""

    @abc.abstractmethod
    def mark_read(self, target: ProviderTarget, *, chat_id: str, provider_message_id: str) -> None:
        """Mark an inbound message (and those before it) as read."""

    @abc.abstractmethod
    def logout(self, target: ProviderTarget) -> None:
        """Log the WhatsApp account out of the instance."""

    @abc.abstractmethod
    def restart(self, target: ProviderTarget) -> None:
        """Restart the instance (the cure for a connected-but-silent session)."""

    @abc.abstractmethod
    def delete(self, target: ProviderTarget) -> None:
        """Remove the instance from the provider."""

    @abc.abstractmethod
    def health(self, target: ProviderTarget) -> HealthResult:
        """Check the provider (server) answers; never raises."""

    @abc.abstractmethod
    def parse_webhook(self, target: ProviderTarget, request: WebhookRequest) -> WebhookResult:
        """Verify the webhook is authentic for `target`, then turn it into normalized events.

        Raise WebhookRejectedError when it is not authentic or cannot be read.
        """
