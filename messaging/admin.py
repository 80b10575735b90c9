"""Admin for messages: the biggest table, so it lists without COUNT(*) and without sorting it all."""

from django import forms
from django.contrib import admin, messages
from django.http import JsonResponse
from django.template.response import TemplateResponse
from django.utils.text import Truncator

from crm.admin_mixins import (
    BigTableAdminMixin,
    OrganizationListFilter,
    OrganizationWalledMixin,
    organization_ids_administered,
)
from messaging.models import WEBHOOK_EVENT_TYPES, Message, WebhookAttempt, WebhookDelivery, WebhookSubscription
from messaging.monitoring import MonitoringScope, monitoring_figures
from messaging.services.outbound import MessageStateError, message_retry
from messaging.services.webhooks_out import (
    WebhookSubscriptionError,
    webhook_delivery_replay,
    webhook_subscription_create,
    webhook_subscription_update,
    webhook_url_normalized,
)

# How often the dashboard page asks for fresh figures.
MONITORING_REFRESH_SECONDS = 3


@admin.register(Message)
class MessageAdmin(BigTableAdminMixin, OrganizationWalledMixin, admin.ModelAdmin):
    list_display = ["id", "timestamp", "organization", "chat", "direction", "type", "status", "text_preview"]
    # No filter on chat or number: their choices would list every row of a huge table.
    list_filter = [("organization", OrganizationListFilter), "direction", "type", "status"]
    # Exact ids first: they are what support gets asked about and they use the unique indexes.
    search_fields = ["=provider_message_id", "=idempotency_key", "text"]
    list_select_related = ["organization", "chat__contact", "chat__number"]
    autocomplete_fields = ["organization", "number", "chat", "sent_by"]
    readonly_fields = ["created_at", "updated_at"]
    actions = ["retry_failed"]
    # Newest first by primary key, an index walk; Meta's (timestamp, id) would sort the table.
    ordering = ["-id"]
    fieldsets = [
        (None, {"fields": ["organization", "number", "chat", "direction", "type", "status", "text"]}),
        ("Media", {"fields": ["media", "media_mime_type", "media_filename", "extra"]}),
        (
            "Delivery",
            {
                "fields": [
                    "timestamp",
                    "provider_message_id",
                    "idempotency_key",
                    "sent_by",
                    "scheduled_at",
                    "attempts",
                    "max_attempts",
                    "error",
                ]
            },
        ),
        ("Record", {"fields": ["created_at", "updated_at"]}),
    ]

    @admin.display(description="text")
    def text_preview(self, message: Message) -> str:
        return Truncator(message.text).chars(60)

    @admin.action(description="Retry selected failed messages")
    def retry_failed(self, request, queryset) -> None:
        retried = skipped = 0
        # Only failed outbound ones qualify; each goes through the service, which enqueues it.
        for message in queryset.filter(direction=Message.Direction.OUTBOUND, status=Message.Status.FAILED):
            try:
                message_retry(message=message)
            except MessageStateError:
                skipped += 1  # retried or changed by someone else meanwhile
            else:
                retried += 1
        skipped += queryset.count() - retried - skipped
        self.message_user(request, f"{retried} message(s) queued again.", messages.SUCCESS)
        if skipped:
            self.message_user(
                request,
                f"{skipped} message(s) skipped: only failed outbound messages can be retried.",
                messages.WARNING,
            )


# --- the monitoring dashboard (/admin/monitoring/), registered by config.admin_site ----------------
def monitoring_scope_of(request) -> MonitoringScope:
    """Superusers see the whole platform; an organization admin only what they administer."""
    if request.user.is_superuser:
        return MonitoringScope(organization_ids=None)
    return MonitoringScope(organization_ids=organization_ids_administered(request))


def monitoring_view(request, site: admin.AdminSite):
    figures = monitoring_figures(scope=monitoring_scope_of(request))
    context = {
        **site.each_context(request),
        "title": "Monitoring",
        "figures": figures,
        "refresh_seconds": MONITORING_REFRESH_SECONDS,
    }
    return TemplateResponse(request, "admin/monitoring.html", context)


def monitoring_data_view(request):
    """The dashboard's figures as JSON; the page polls it every few seconds."""
    response = JsonResponse(monitoring_figures(scope=monitoring_scope_of(request)))
    response["Cache-Control"] = "no-store"
    return response


# --- webhooks to integrators --------------------------------------------------------------------------
class WebhookSubscriptionForm(forms.ModelForm):
    url = forms.URLField(max_length=500, assume_scheme="https")
    events = forms.MultipleChoiceField(
        choices=[(event_type, event_type) for event_type in WEBHOOK_EVENT_TYPES], widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = WebhookSubscription
        fields = ["organization", "url", "events", "description", "is_active"]

    def clean_url(self) -> str:
        try:
            return webhook_url_normalized(self.cleaned_data["url"])
        except WebhookSubscriptionError as error:
            raise forms.ValidationError(str(error)) from error


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(OrganizationWalledMixin, admin.ModelAdmin):
    # The secret is never listed nor shown again after creation (see ProviderServerAdmin).
    form = WebhookSubscriptionForm
    list_display = ["url", "organization", "events", "is_active", "cursor", "created_at"]
    list_filter = [("organization", OrganizationListFilter), "is_active"]
    search_fields = ["url", "description"]
    list_select_related = ["organization"]
    autocomplete_fields = ["organization"]
    readonly_fields = ["cursor", "created_at"]

    def save_model(self, request, obj, form, change) -> None:
        data = form.cleaned_data
        if change:
            webhook_subscription_update(
                subscription=obj,
                url=data["url"],
                events=data["events"],
                description=data["description"],
                is_active=data["is_active"],
            )
            return
        created = webhook_subscription_create(
            organization=data["organization"], url=data["url"], events=data["events"], description=data["description"]
        )
        obj.pk = created.pk
        self.message_user(
            request,
            f"Signing secret of this subscription (shown only now, copy it): {created.secret}",
            messages.WARNING,
        )


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    fields = ["created_at", "status_code", "duration_ms", "error"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    # The parent delivery's admin is walled; its inline shows what that delivery's page shows.
    def has_view_permission(self, request, obj=None) -> bool:
        return True


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(BigTableAdminMixin, OrganizationWalledMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "created_at",
        "organization",
        "subscription",
        "event_type",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
    ]
    list_filter = [("organization", OrganizationListFilter), "status", "event_type"]
    search_fields = ["=id", "subscription__url"]
    list_select_related = ["organization", "subscription"]
    fields = [
        "organization",
        "subscription",
        "event",
        "event_type",
        "status",
        "attempts",
        "next_attempt_at",
        "last_status_code",
        "last_error",
        "created_at",
        "updated_at",
    ]
    readonly_fields = fields
    inlines = [WebhookAttemptInline]
    actions = ["replay"]
    ordering = ["-id"]

    def has_add_permission(self, request) -> bool:
        return False  # deliveries come from events, never by hand

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # read-only; replaying is the action

    @admin.action(description="Replay selected deliveries (send them again)")
    def replay(self, request, queryset) -> None:
        replayed = [webhook_delivery_replay(delivery=delivery) for delivery in queryset]
        self.message_user(request, f"{len(replayed)} delivery(ies) queued to be sent again.", messages.SUCCESS)
