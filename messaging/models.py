"""Messages: every inbound and outbound message, which is also the durable outbox."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from crm.models import Chat, Organization, WhatsAppNumber


class Message(models.Model):
    class Direction(models.TextChoices):
        INBOUND = "in", _("Inbound")
        OUTBOUND = "out", _("Outbound")

    class Type(models.TextChoices):
        TEXT = "text", _("Text")
        IMAGE = "image", _("Image")
        AUDIO = "audio", _("Audio")
        VIDEO = "video", _("Video")
        DOCUMENT = "document", _("Document")
        LOCATION = "location", _("Location")
        STICKER = "sticker", _("Sticker")

    class Status(models.TextChoices):
        RECEIVED = "received", _("Received")  # every inbound message
        QUEUED = "queued", _("Queued")
        SENDING = "sending", _("Sending")
        SENT = "sent", _("Sent")
        DELIVERED = "delivered", _("Delivered")
        READ = "read", _("Read")
        FAILED = "failed", _("Failed")

    OUTBOUND_STATUSES = (Status.QUEUED, Status.SENDING, Status.SENT, Status.DELIVERED, Status.READ, Status.FAILED)

    # organization and number repeat the chat's: they carry the per-organization idempotency key and
    # the per-number provider id constraints, and a composite key ties them to the chat's own.
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="messages")
    number = models.ForeignKey(WhatsAppNumber, on_delete=models.CASCADE, related_name="messages")
    chat = models.ForeignKey(Chat, on_delete=models.CASCADE, related_name="messages")
    direction = models.CharField(max_length=3, choices=Direction.choices)
    type = models.CharField(max_length=16, choices=Type.choices, default=Type.TEXT)
    text = models.TextField(blank=True)
    media = models.FileField(upload_to="media/%Y/%m/%d/", blank=True)
    media_mime_type = models.CharField(max_length=100, blank=True)
    media_filename = models.CharField(max_length=255, blank=True)

    class MediaState(models.TextChoices):
        NONE = "none", _("No media")
        PENDING = "pending", _("Downloading")
        STORED = "stored", _("Stored")
        FAILED = "failed", _("Download failed")

    # Inbound media is copied into our storage (`media`) by a retried task; until then the
    # provider's reference waits here, and a failed download stays visible instead of vanishing.
    media_state = models.CharField(max_length=16, choices=MediaState.choices, default=MediaState.NONE)
    media_source = models.TextField(blank=True, help_text="The provider's URL or media id to download from.")
    media_error = models.TextField(blank=True)
    # Type-specific details that have no column of their own: a location's coordinates and name.
    extra = models.JSONField(default=dict, blank=True)
    # NULL, not "", when absent: the per-number unique constraint must ignore messages without one.
    provider_message_id = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001
    # WhatsApp's time for the message; history is ordered by it, not by arrival (field notes #6).
    timestamp = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=16, choices=Status.choices)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField(default=3)
    scheduled_at = models.DateTimeField(null=True, blank=True)
    sent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    idempotency_key = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["timestamp", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["number", "provider_message_id"],
                condition=Q(provider_message_id__isnull=False),
                name="message_provider_id_once_per_number",
            ),
            models.UniqueConstraint(
                fields=["organization", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="message_idempotency_key_once_per_organization",
            ),
            models.CheckConstraint(
                condition=(Q(direction="in") & Q(status="received"))
                | (Q(direction="out") & Q(status__in=["queued", "sending", "sent", "delivered", "read", "failed"])),
                name="message_status_fits_direction",
            ),
            models.CheckConstraint(condition=Q(max_attempts__gte=1), name="message_allows_an_attempt"),
            models.CheckConstraint(condition=Q(attempts__lte=F("max_attempts")), name="message_attempts_within_max"),
            models.CheckConstraint(
                condition=Q(provider_message_id__isnull=True) | ~Q(provider_message_id=""),
                name="message_provider_id_not_blank",
            ),
            models.CheckConstraint(
                condition=Q(idempotency_key__isnull=True) | ~Q(idempotency_key=""),
                name="message_idempotency_key_not_blank",
            ),
        ]
        indexes = [
            # A chat's history, newest first, paged by (timestamp, id) keyset.
            models.Index(fields=["chat", "-timestamp", "-id"], name="message_chat_history"),
            # The outbox: what is waiting to go out, oldest first.
            models.Index(
                fields=["status", "scheduled_at", "id"],
                condition=Q(status__in=["queued", "sending"]),
                name="message_outbox",
            ),
            # The media sweep: downloads still pending, oldest first (a handful among millions).
            models.Index(fields=["created_at"], condition=Q(media_state="pending"), name="message_media_pending"),
        ]

    def __str__(self) -> str:
        return f"{self.get_direction_display()} {self.get_type_display()} #{self.pk}"

    def clean(self) -> None:
        if self.chat_id and (
            self.chat.number_id != self.number_id or self.chat.organization_id != self.organization_id
        ):
            raise ValidationError({"chat": "The chat belongs to another number or organization."})


class Event(models.Model):
    """One entry of an organization's event log: the spine of pushes, catch-up and webhooks out.

    Written in the same transaction as the change it records. `sequence` is the organization's
    cursor: taken under the organization row's lock, so events become visible in cursor order and
    a client that read up to N never misses an event numbered below N that commits later.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="events")
    sequence = models.PositiveBigIntegerField()
    type = models.CharField(max_length=64)  # dotted: message.created, message.status, chat.updated
    chat = models.ForeignKey(Chat, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    number = models.ForeignKey(WhatsAppNumber, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organization", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "sequence"], name="event_sequence_once_per_organization"),
        ]

    def __str__(self) -> str:
        return f"{self.type} #{self.sequence}"


class DailyUsage(models.Model):
    """Outbound messages an organization had accepted on one UTC day: the plan quota's counter.

    Incremented with one conditional upsert per accepted send, so concurrent sends can never take
    the count past the plan's limit.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="daily_usage")
    day = models.DateField()
    messages_sent = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name_plural = "daily usage"
        constraints = [models.UniqueConstraint(fields=["organization", "day"], name="daily_usage_once_per_day")]

    def __str__(self) -> str:
        return f"{self.organization} on {self.day}: {self.messages_sent}"


class HourlyStatistic(models.Model):
    """Messages per hour and number: total, sent (outbound) and received (inbound).

    Read-only. On PostgreSQL a materialized view, on SQLite (embedded mode) a table; both are
    created in migration 0007 and refreshed by the statistics beat
    (messaging.services.statistics.hourly_statistics_refresh). Hours are of `created_at`, when a
    message passed through Conversa. `id` is the smallest message id of the group: unique, stable.
    """

    hour = models.DateTimeField()
    organization = models.ForeignKey(Organization, on_delete=models.DO_NOTHING, related_name="+", db_constraint=False)
    number = models.ForeignKey(WhatsAppNumber, on_delete=models.DO_NOTHING, related_name="+", db_constraint=False)
    messages_total = models.PositiveIntegerField()
    messages_sent = models.PositiveIntegerField()
    messages_received = models.PositiveIntegerField()

    class Meta:
        managed = False
        db_table = "messaging_hourly_statistics"
        ordering = ["hour", "number"]

    def __str__(self) -> str:
        return f"number {self.number_id} at {self.hour:%Y-%m-%d %H:00}: {self.messages_total}"


# The event-log types an integrator may subscribe to (see messaging.events and services.chats).
WEBHOOK_EVENT_TYPES = (
    "message.created",  # a message received, or one of ours accepted for sending
    "message.status",  # an outbound message sent, delivered, read or failed
    "number.state",  # a number connected, disconnected, logged out
    "chat.assigned",
    "chat.resolved",
    "chat.updated",  # reopened, set pending, marked read
)


class WebhookSubscription(models.Model):
    """An integrator's URL that receives an organization's events of the chosen types, signed.

    `cursor` is the last event sequence of the organization already turned into deliveries for
    this subscription: the fan-out reads the event log after it (messaging.services.webhooks_out).
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="webhook_subscriptions")
    url = models.URLField(max_length=500)
    events = models.JSONField(default=list, help_text="Event types delivered, such as message.created.")
    secret = models.CharField(max_length=64, help_text="Signs every delivery (HMAC-SHA256).")
    is_active = models.BooleanField(default=True)
    description = models.CharField(max_length=200, blank=True)
    cursor = models.PositiveBigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organization", "id"]
        constraints = [
            models.CheckConstraint(condition=~Q(secret=""), name="webhook_subscription_has_secret"),
            models.CheckConstraint(
                condition=Q(url__startswith="http://") | Q(url__startswith="https://"),
                name="webhook_subscription_url_is_http",
            ),
        ]

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(models.Model):
    """One event sent to one subscription: retried until it succeeds or fails for good."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    subscription = models.ForeignKey(WebhookSubscription, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="+")
    event_type = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        ordering = ["-id"]
        constraints = [
            # An event is delivered once per subscription, however often the fan-out runs.
            models.UniqueConstraint(fields=["subscription", "event"], name="webhook_delivery_once_per_event"),
        ]
        indexes = [
            models.Index(
                fields=["status", "next_attempt_at"],
                condition=Q(status__in=["pending", "sending"]),
                name="webhook_delivery_due",
            ),
            models.Index(fields=["subscription", "-id"], name="webhook_delivery_by_sub"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.subscription_id} ({self.status})"


class WebhookAttempt(models.Model):
    """One HTTP request of a delivery, as it went: what came back, how long it took, what failed."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField()
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["delivery", "id"]

    def __str__(self) -> str:
        return f"attempt {self.pk} of delivery {self.delivery_id}: {self.status_code or self.error[:40]}"
