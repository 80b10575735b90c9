"""Organizations, their plans and people, WhatsApp numbers, contacts and chats.

Invariants live in the database (unique and check constraints here; the cross-organization
composite foreign keys in migration 0002 on PostgreSQL). `clean()` repeats the cross-organization
rules so forms show an error instead of a database failure, and so SQLite (embedded mode) keeps
them too.
"""

import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from crm.phones import E164_PATTERN, IdentityKind
from providers.registry import ProviderName

e164_validator = RegexValidator(E164_PATTERN, "Use international format, such as +5511912345678.")


def webhook_secret_generate() -> str:
    return secrets.token_urlsafe(32)


class Plan(models.Model):
    """What an organization pays for: limits and the provider its new numbers get."""

    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=64)
    max_numbers = models.PositiveIntegerField(help_text="WhatsApp numbers an organization may connect.")
    messages_per_day = models.PositiveIntegerField(
        null=True, blank=True, help_text="Outbound messages per day; empty means unlimited."
    )
    api_requests_per_minute = models.PositiveIntegerField(help_text="Requests per minute per API key.")
    default_provider = models.CharField(max_length=32, choices=ProviderName.choices)

    class Meta:
        ordering = ["max_numbers", "code"]
        constraints = [
            models.CheckConstraint(condition=Q(max_numbers__gte=1), name="plan_allows_a_number"),
            models.CheckConstraint(condition=Q(api_requests_per_minute__gte=1), name="plan_allows_api_requests"),
        ]

    def __str__(self) -> str:
        return self.name


class Organization(models.Model):
    """A customer account; every other row of the CRM belongs to exactly one."""

    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=64, unique=True)
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="organizations")
    is_active = models.BooleanField(default=True)
    # The cursor of the organization's event log: bumped, under the row's lock, by every event.
    event_sequence = models.PositiveBigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's place in an organization; a user may belong to several."""

    class Role(models.TextChoices):
        ADMIN = "admin", _("Admin")
        AGENT = "agent", _("Agent")

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.AGENT)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organization", "user"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "user"], name="membership_once_per_organization"),
            # Target of the composite key that keeps a chat's assignee inside the chat's organization.
            models.UniqueConstraint(fields=["id", "organization"], name="membership_id_organization"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"

    @property
    def is_admin(self) -> bool:
        return self.role == self.Role.ADMIN


class ProviderServer(models.Model):
    """A self-hosted provider server (Evolution API) that numbers are spread over."""

    provider = models.CharField(max_length=32, choices=ProviderName.choices, default=ProviderName.EVOLUTION)
    name = models.CharField(max_length=64, unique=True)
    base_url = models.URLField()
    api_key = models.CharField(max_length=255, help_text="The server's global API key.")
    capacity = models.PositiveIntegerField(default=100, help_text="Most numbers this server should hold.")
    is_healthy = models.BooleanField(default=True)
    is_draining = models.BooleanField(default=False, help_text="Keeps its numbers but gets no new ones.")
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_latency_ms = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    allowed_webhook_ips = models.TextField(
        blank=True, help_text="Optional: webhook source IPs or networks, one per line; empty allows any."
    )

    class Meta:
        ordering = ["provider", "name"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "base_url"], name="provider_server_url_once"),
            models.CheckConstraint(condition=Q(capacity__gte=1), name="provider_server_has_capacity"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_provider_display()})"


class WhatsAppNumber(models.Model):
    """One WhatsApp account of an organization, connected through one provider."""

    class State(models.TextChoices):
        NOT_PROVISIONED = "not_provisioned", _("Not provisioned")
        CONNECTING = "connecting", _("Connecting")
        WAITING_FOR_QR_SCAN = "waiting_for_qr_scan", _("Waiting for QR scan")
        CONNECTED = "connected", _("Connected")
        DISCONNECTED = "disconnected", _("Disconnected")
        LOGGED_OUT = "logged_out", _("Logged out")
        BANNED = "banned", _("Banned")

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="numbers")
    name = models.CharField(max_length=120, help_text="What agents see, such as 'Sales'.")
    provider = models.CharField(max_length=32, choices=ProviderName.choices)
    server = models.ForeignKey(ProviderServer, on_delete=models.PROTECT, null=True, blank=True, related_name="numbers")
    instance_name = models.CharField(max_length=100, unique=True, help_text="The provider's instance id.")
    phone = models.CharField(max_length=16, blank=True, validators=[e164_validator])
    state = models.CharField(max_length=32, choices=State.choices, default=State.NOT_PROVISIONED)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    webhook_secret = models.CharField(max_length=64, default=webhook_secret_generate)
    # Provider credentials that are per number (Green API instance token, Meta phone number id and
    # access token, Twilio account); Evolution's come from its server.
    credentials = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Silent connections (messaging.services.health): the provider says "connected" but nothing
    # arrives and sends stay unacknowledged. The health beat restarts such a number once
    # (`silence_restarted_at`); still silent at the next check, it is flagged (`silent_since`) for
    # the organization's admins. Both clear when the number is heard from again. Fields beside
    # `state`, not a new state: the provider's connection state stays what the provider says.
    silence_restarted_at = models.DateTimeField(null=True, blank=True)
    silent_since = models.DateTimeField(null=True, blank=True)
    # Set by the cleanup beat: removed from its provider server, history kept, out of every list,
    # placement and health check.
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "WhatsApp number"
        ordering = ["organization", "name"]
        constraints = [
            models.UniqueConstraint(fields=["id", "organization"], name="number_id_organization"),
            models.CheckConstraint(
                condition=Q(phone="") | Q(phone__regex=E164_PATTERN.pattern), name="number_phone_e164"
            ),
            models.CheckConstraint(condition=~Q(webhook_secret=""), name="number_has_webhook_secret"),
            models.CheckConstraint(
                condition=Q(silent_since__isnull=True) | Q(silence_restarted_at__isnull=False),
                name="number_flagged_silent_after_a_restart",
            ),
            models.CheckConstraint(
                condition=Q(archived_at__isnull=True) | ~Q(state="connected"), name="number_archived_not_connected"
            ),
        ]
        indexes = [models.Index(fields=["provider", "state"], name="number_provider_state")]

    def __str__(self) -> str:
        return f"{self.name} ({self.phone or self.instance_name})"

    def clean(self) -> None:
        if self.server_id and self.server.provider != self.provider:
            raise ValidationError({"server": "This server runs a different provider."})

    @property
    def is_connected(self) -> bool:
        return self.state == self.State.CONNECTED

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None

    @property
    def is_flagged_silent(self) -> bool:
        return self.silent_since is not None


class Contact(models.Model):
    """A person an organization talks to, whatever ids the providers know them by."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="contacts")
    name = models.CharField(max_length=200, blank=True)
    phone = models.CharField(max_length=16, blank=True, validators=[e164_validator])
    # What agents know about the person: short tags ("vip", "lead") and free notes (contact panel).
    labels = models.JSONField(default=list, blank=True)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["id", "organization"], name="contact_id_organization"),
            models.CheckConstraint(
                condition=Q(phone="") | Q(phone__regex=E164_PATTERN.pattern), name="contact_phone_e164"
            ),
        ]
        indexes = [models.Index(fields=["organization", "phone"], name="contact_organization_phone")]

    def __str__(self) -> str:
        return self.name or self.phone or f"Contact {self.pk}"


class ContactIdentity(models.Model):
    """One WhatsApp id of a contact, canonical (see crm.phones): E.164 phone or `<digits>@lid`."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="identities")
    kind = models.CharField(max_length=8, choices=IdentityKind.CHOICES)
    value = models.CharField(max_length=64)

    class Meta:
        verbose_name_plural = "contact identities"
        constraints = [
            # One id is one person within an organization: this is what matching relies on.
            models.UniqueConstraint(fields=["organization", "kind", "value"], name="identity_once_per_organization"),
            models.CheckConstraint(
                condition=(Q(kind=IdentityKind.PHONE) & Q(value__regex=E164_PATTERN.pattern))
                | (Q(kind=IdentityKind.LID) & Q(value__regex=r"^\d+@lid$")),
                name="identity_value_canonical",
            ),
        ]

    def __str__(self) -> str:
        return self.value

    def clean(self) -> None:
        if self.contact_id and self.organization_id and self.contact.organization_id != self.organization_id:
            raise ValidationError({"contact": "This contact belongs to another organization."})


class Chat(models.Model):
    """The conversation between one of our numbers and one contact."""

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        PENDING = "pending", _("Pending")
        RESOLVED = "resolved", _("Resolved")

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="chats")
    number = models.ForeignKey(WhatsAppNumber, on_delete=models.CASCADE, related_name="chats")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="chats")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    assignee = models.ForeignKey(
        Membership, on_delete=models.SET_NULL, null=True, blank=True, related_name="assigned_chats"
    )
    unread_count = models.PositiveIntegerField(default=0)
    last_message_at = models.DateTimeField(null=True, blank=True)
    last_message_preview = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-last_message_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["number", "contact"], name="chat_once_per_number_and_contact"),
            # Targets of the composite key that keeps each message on its chat's number and organization.
            models.UniqueConstraint(fields=["id", "number", "organization"], name="chat_id_number_organization"),
        ]
        indexes = [
            # The inbox list: an organization's chats by status, newest activity first (keyset).
            models.Index(fields=["organization", "status", "-last_message_at", "-id"], name="chat_inbox"),
            models.Index(fields=["number", "status", "-last_message_at", "-id"], name="chat_inbox_by_number"),
            models.Index(fields=["assignee", "status", "-last_message_at"], name="chat_inbox_by_assignee"),
        ]

    def __str__(self) -> str:
        return f"{self.contact} via {self.number}"

    def clean(self) -> None:
        errors = {}
        if self.number_id and self.number.organization_id != self.organization_id:
            errors["number"] = "This number belongs to another organization."
        if self.contact_id and self.contact.organization_id != self.organization_id:
            errors["contact"] = "This contact belongs to another organization."
        if self.assignee_id and self.assignee.organization_id != self.organization_id:
            errors["assignee"] = "The assignee is not a member of this organization."
        if errors:
            raise ValidationError(errors)


class HealthCheck(models.Model):
    """One health probe of a provider server or of a connected number, kept for the dashboard.

    Written by the health beat (messaging.services.health); pruned after HEALTH_RETENTION_DAYS.
    A server's check has no number and no organization (servers are shared by organizations).
    """

    provider = models.CharField(max_length=32, choices=ProviderName.choices)
    server = models.ForeignKey(ProviderServer, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    number = models.ForeignKey(WhatsAppNumber, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    is_healthy = models.BooleanField()
    latency_ms = models.PositiveIntegerField()
    error = models.TextField(blank=True)
    checked_at = models.DateTimeField()

    class Meta:
        ordering = ["-checked_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(number__isnull=False) | Q(server__isnull=False), name="health_check_of_something"
            ),
            models.CheckConstraint(
                condition=Q(number__isnull=True) | Q(organization__isnull=False),
                name="health_check_of_number_has_organization",
            ),
        ]
        indexes = [
            # The dashboard's last-hour figures (all organizations, or one) and the prune's range.
            models.Index(fields=["checked_at"], name="health_check_time"),
            models.Index(fields=["organization", "checked_at"], name="health_check_organization_time"),
            # A number's latest check (unhealthy numbers on the dashboard).
            models.Index(fields=["number", "-checked_at"], name="health_check_number_latest"),
        ]

    def __str__(self) -> str:
        subject = f"number {self.number_id}" if self.number_id else f"server {self.server_id}"
        return f"{subject}: {'healthy' if self.is_healthy else 'unhealthy'} at {self.checked_at:%Y-%m-%d %H:%M}"


class ChatNote(models.Model):
    """A private note agents leave on a chat: shown to the team, never sent to the contact."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    chat = models.ForeignKey(Chat, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["chat", "created_at", "id"]
        constraints = [models.CheckConstraint(condition=~Q(text=""), name="chat_note_has_text")]
        indexes = [models.Index(fields=["chat", "-created_at", "-id"], name="chat_note_recent")]

    def __str__(self) -> str:
        return f"Note #{self.pk} on chat {self.chat_id}"

    def clean(self) -> None:
        if self.chat_id and self.organization_id and self.chat.organization_id != self.organization_id:
            raise ValidationError({"chat": "This chat belongs to another organization."})


class QuickReply(models.Model):
    """A canned response of an organization, inserted in the composer by typing "/<shortcut>"."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="quick_replies")
    shortcut = models.SlugField(max_length=32)
    text = models.TextField(max_length=4096)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "quick replies"
        ordering = ["organization", "shortcut"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "shortcut"], name="quick_reply_shortcut_once"),
            models.CheckConstraint(condition=~Q(shortcut="") & ~Q(text=""), name="quick_reply_has_shortcut_and_text"),
        ]

    def __str__(self) -> str:
        return f"/{self.shortcut}"


class ApiKey(models.Model):
    """A secret an integrator sends as `Authorization: Bearer <key>`; acts for its organization.

    Only a SHA-256 of the key is kept (keys are 256 random bits, so a fast hash is as safe as a slow
    one and costs microseconds per request); the key itself is shown once, when created. `prefix`
    is its first characters, shown in lists so people can tell keys apart. A rotated key keeps
    working until `expires_at`; a revoked one stops at once.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=120)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Set when the key is rotated.")
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"
        ordering = ["organization", "-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(key_hash__regex=r"^[0-9a-f]{64}$"), name="api_key_hash_is_sha256"),
            models.CheckConstraint(condition=~Q(prefix=""), name="api_key_has_prefix"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
