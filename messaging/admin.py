"""Admin for messages: the biggest table, so it lists without COUNT(*) and without sorting it all."""

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
from messaging.models import Message
from messaging.monitoring import MonitoringScope, monitoring_figures
from messaging.services.outbound import MessageStateError, message_retry

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
