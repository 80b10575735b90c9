"""API of the organization's limits: its plan's, and how much of today's message quota is used."""

from datetime import UTC

from django.utils import timezone
from rest_framework import serializers
from rest_framework.response import Response

from crm.models import Organization
from crm.selectors import number_rows_cached, plan_limits
from messaging.api.base import OrganizationApi
from messaging.api.schema import api_doc
from messaging.selectors import messages_sent_on
from messaging.services.outbound import quota_resets_at


class LimitsOut(serializers.Serializer):
    requests_per_minute = serializers.IntegerField(help_text="Per API key (X-RateLimit-Limit).")
    messages_per_day = serializers.IntegerField(allow_null=True, help_text="Null: unlimited.")
    messages_sent_today = serializers.IntegerField(help_text="Accepted sends since 00:00 UTC.")
    quota_resets_at = serializers.DateTimeField(help_text="The next 00:00 UTC.")
    max_numbers = serializers.IntegerField()
    numbers = serializers.IntegerField()


class LimitsApi(OrganizationApi):
    @api_doc(summary="The plan's limits and today's use of the message quota", responses={200: LimitsOut})
    def get(self, request):
        organization_id = self.organization_id()
        plan_id = Organization.objects.values_list("plan_id", flat=True).get(pk=organization_id)
        limits = plan_limits(plan_id=plan_id)
        now = timezone.now()
        return Response(
            {
                "requests_per_minute": limits.api_requests_per_minute,
                "messages_per_day": limits.messages_per_day,
                "messages_sent_today": messages_sent_on(
                    organization_id=organization_id, day=now.astimezone(UTC).date()
                ),
                "quota_resets_at": quota_resets_at(now).isoformat(),
                "max_numbers": limits.max_numbers,
                "numbers": len(number_rows_cached(organization_id=organization_id)),
            }
        )
