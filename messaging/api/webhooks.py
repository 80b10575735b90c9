"""API of webhook subscriptions (CRUD), their deliveries with each attempt, and replay."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers, status
from rest_framework.response import Response

from messaging.api.base import OrganizationApi, iso, query_validated
from messaging.api.errors import ApiError
from messaging.api.pagination import CURSOR_PARAMETER, LIMIT_PARAMETER, LimitSerializer, id_page, page_serializer
from messaging.api.permissions import IsOrganizationAdmin, request_organization
from messaging.api.schema import api_doc
from messaging.models import WEBHOOK_EVENT_TYPES, WebhookDelivery, WebhookSubscription
from messaging.services.webhooks_out import (
    WebhookSubscriptionError,
    webhook_delivery_replay,
    webhook_subscription_create,
    webhook_subscription_delete,
    webhook_subscription_update,
    webhook_url_normalized,
)

URL_MAX_CHARS = 500


# --- shapes ------------------------------------------------------------------------------------------
class WebhookUrlField(serializers.URLField):
    """An http(s) URL: anything else (ftp:, file:, javascript:) is refused with a 400."""

    def __init__(self, **kwargs):
        super().__init__(max_length=URL_MAX_CHARS, **kwargs)

    def to_internal_value(self, data):
        try:
            return webhook_url_normalized(super().to_internal_value(data))
        except WebhookSubscriptionError as error:
            raise serializers.ValidationError(str(error)) from error


class SubscriptionCreateIn(serializers.Serializer):
    url = WebhookUrlField()
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=WEBHOOK_EVENT_TYPES), min_length=1, max_length=len(WEBHOOK_EVENT_TYPES)
    )
    description = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")


class SubscriptionUpdateIn(serializers.Serializer):
    url = WebhookUrlField(required=False)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=WEBHOOK_EVENT_TYPES),
        min_length=1,
        max_length=len(WEBHOOK_EVENT_TYPES),
        required=False,
    )
    description = serializers.CharField(required=False, allow_blank=True, max_length=200)
    is_active = serializers.BooleanField(required=False)


class SubscriptionOut(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.CharField()
    events = serializers.ListField(child=serializers.ChoiceField(choices=WEBHOOK_EVENT_TYPES))
    description = serializers.CharField()
    is_active = serializers.BooleanField()
    cursor = serializers.IntegerField(help_text="The last event of the organization's log turned into deliveries.")
    created_at = serializers.DateTimeField()


class SubscriptionCreatedOut(SubscriptionOut):
    secret = serializers.CharField(help_text="Signs every delivery; shown only now. Keep it secret.")


class SubscriptionListOut(serializers.Serializer):
    results = SubscriptionOut(many=True)


class AttemptOut(serializers.Serializer):
    status_code = serializers.IntegerField(allow_null=True)
    duration_ms = serializers.IntegerField()
    error = serializers.CharField()
    created_at = serializers.DateTimeField()


class DeliveryOut(serializers.Serializer):
    id = serializers.IntegerField(help_text="Sent as X-Conversa-Delivery.")
    subscription = serializers.IntegerField()
    event_type = serializers.ChoiceField(choices=WEBHOOK_EVENT_TYPES)
    event_cursor = serializers.IntegerField()
    status = serializers.ChoiceField(choices=WebhookDelivery.Status.choices)
    attempts = serializers.IntegerField()
    next_attempt_at = serializers.DateTimeField()
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField()
    created_at = serializers.DateTimeField()


class DeliveryDetailOut(DeliveryOut):
    attempt_log = AttemptOut(many=True)


DeliveryPageOut = page_serializer(DeliveryOut, "DeliveryPage")


class DeliveryListQuery(LimitSerializer):
    cursor = serializers.CharField(required=False)


def subscription_output(subscription: WebhookSubscription) -> dict:
    return {
        "id": subscription.pk,
        "url": subscription.url,
        "events": subscription.events,
        "description": subscription.description,
        "is_active": subscription.is_active,
        "cursor": subscription.cursor,
        "created_at": iso(subscription.created_at),
    }


def delivery_output(delivery: WebhookDelivery) -> dict:
    return {
        "id": delivery.pk,
        "subscription": delivery.subscription_id,
        "event_type": delivery.event_type,
        "event_cursor": delivery.event.sequence,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": iso(delivery.next_attempt_at),
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "created_at": iso(delivery.created_at),
    }


def delivery_detail_output(delivery: WebhookDelivery) -> dict:
    attempts = [
        {
            "status_code": attempt.status_code,
            "duration_ms": attempt.duration_ms,
            "error": attempt.error,
            "created_at": iso(attempt.created_at),
        }
        for attempt in delivery.attempt_log.all()
    ]
    return {**delivery_output(delivery), "attempt_log": attempts}


def _refused(error: WebhookSubscriptionError) -> ApiError:
    return ApiError(status_code=400, code="invalid", message=str(error))


# --- views -------------------------------------------------------------------------------------------
class WebhookApi(OrganizationApi):
    """Webhooks are the organization's plumbing: API keys and organization admins only."""

    permission_classes = [IsOrganizationAdmin]

    def subscription(self, subscription_id: int) -> WebhookSubscription:
        return get_object_or_404(WebhookSubscription, pk=subscription_id, organization_id=self.organization_id())

    def delivery(self, delivery_id: int) -> WebhookDelivery:
        deliveries = WebhookDelivery.objects.select_related("event").prefetch_related("attempt_log")
        return get_object_or_404(deliveries, pk=delivery_id, organization_id=self.organization_id())


class SubscriptionListApi(WebhookApi):
    @api_doc(summary="List webhook subscriptions", responses={200: SubscriptionListOut})
    def get(self, request):
        subscriptions = WebhookSubscription.objects.filter(organization_id=self.organization_id()).order_by("id")
        return Response({"results": [subscription_output(subscription) for subscription in subscriptions]})

    @api_doc(
        summary="Subscribe a URL to events",
        request=SubscriptionCreateIn,
        responses={201: SubscriptionCreatedOut},
        description="Events from now on are delivered, signed with the returned secret (see the README recipe).",
    )
    def post(self, request):
        data = SubscriptionCreateIn(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            subscription = webhook_subscription_create(
                organization=request_organization(request), **data.validated_data
            )
        except WebhookSubscriptionError as error:
            raise _refused(error) from error
        body = {**subscription_output(subscription), "secret": subscription.secret}
        return Response(body, status=status.HTTP_201_CREATED)


class SubscriptionDetailApi(WebhookApi):
    @api_doc(summary="Get a webhook subscription", responses={200: SubscriptionOut})
    def get(self, request, subscription_id: int):
        return Response(subscription_output(self.subscription(subscription_id)))

    @api_doc(summary="Change a webhook subscription", request=SubscriptionUpdateIn, responses={200: SubscriptionOut})
    def patch(self, request, subscription_id: int):
        subscription = self.subscription(subscription_id)
        data = SubscriptionUpdateIn(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            subscription = webhook_subscription_update(subscription=subscription, **data.validated_data)
        except WebhookSubscriptionError as error:
            raise _refused(error) from error
        return Response(subscription_output(subscription))

    @api_doc(summary="Delete a webhook subscription", responses={204: OpenApiResponse(description="Deleted.")})
    def delete(self, request, subscription_id: int):
        webhook_subscription_delete(subscription=self.subscription(subscription_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class DeliveryListApi(WebhookApi):
    @api_doc(
        summary="A subscription's deliveries, newest first",
        responses={200: DeliveryPageOut},
        parameters=[LIMIT_PARAMETER, CURSOR_PARAMETER],
    )
    def get(self, request, subscription_id: int):
        subscription = self.subscription(subscription_id)
        query = query_validated(DeliveryListQuery, request)
        deliveries = WebhookDelivery.objects.filter(subscription=subscription).select_related("event")
        rows, next_cursor = id_page(deliveries, cursor=query.get("cursor"), limit=query["limit"])
        return Response({"results": [delivery_output(delivery) for delivery in rows], "next": next_cursor})


class DeliveryDetailApi(WebhookApi):
    @api_doc(summary="Get a delivery with every attempt", responses={200: DeliveryDetailOut})
    def get(self, request, delivery_id: int):
        return Response(delivery_detail_output(self.delivery(delivery_id)))


class DeliveryReplayApi(WebhookApi):
    @api_doc(
        summary="Send a delivery again (same id and body, fresh attempts)",
        request=None,
        responses={202: DeliveryDetailOut},
    )
    def post(self, request, delivery_id: int):
        delivery = webhook_delivery_replay(delivery=self.delivery(delivery_id))
        return Response(delivery_detail_output(self.delivery(delivery.pk)), status=status.HTTP_202_ACCEPTED)
