"""API of WhatsApp numbers: list, add within the plan, get, delete, connect (QR or pairing code), log out."""

import re

from django.core.exceptions import ValidationError as DjangoValidationError
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers, status
from rest_framework.response import Response

from crm.models import WhatsAppNumber
from crm.phones import phone_normalize
from crm.selectors import number_rows_cached
from crm.services import NumberLimitReachedError, number_create, number_delete
from messaging.api.base import OrganizationApi, iso
from messaging.api.errors import ApiError
from messaging.api.permissions import IsOrganizationAdmin, request_organization
from messaging.api.schema import api_doc
from messaging.services.numbers import number_connect_request, number_logout_request
from messaging.views import qr_current
from providers.registry import ProviderName


# --- shapes ------------------------------------------------------------------------------------------
class NumberOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    phone = serializers.CharField(help_text="E.164; empty until the provider tells us.")
    provider = serializers.ChoiceField(choices=ProviderName.choices)
    state = serializers.ChoiceField(choices=WhatsAppNumber.State.choices)
    is_connected = serializers.BooleanField()
    last_seen_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


class NumberListOut(serializers.Serializer):
    results = NumberOut(many=True)


class NumberCreateIn(serializers.Serializer):
    name = serializers.CharField(max_length=120)
    provider = serializers.ChoiceField(
        choices=ProviderName.choices, required=False, help_text="Defaults to the plan's provider."
    )
    credentials = serializers.DictField(
        child=serializers.CharField(max_length=1000),
        required=False,
        help_text="Per-number provider credentials (Green API, Meta, Twilio), text values; see the README.",
    )

    def validate_name(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("Give the number a name.")
        return value

    def validate_credentials(self, value: dict) -> dict:
        # The values' CharField refuses NUL and lone surrogates (PostgreSQL cannot store them); the
        # names get the same check here.
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
                raise serializers.ValidationError("Credential names are 1 to 64 letters, digits, '_', '.', '-'.")
        return value


class NumberConnectIn(serializers.Serializer):
    phone = serializers.CharField(
        required=False, allow_blank=True, max_length=32, help_text="For a pairing code instead of a QR code."
    )

    def validate_phone(self, value: str) -> str:
        if not value.strip():
            return ""
        try:
            return phone_normalize(value)
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.messages) from error


class NumberStateOut(serializers.Serializer):
    id = serializers.IntegerField()
    state = serializers.ChoiceField(choices=WhatsAppNumber.State.choices)
    is_connected = serializers.BooleanField()
    phone = serializers.CharField()
    last_seen_at = serializers.DateTimeField(allow_null=True)


class QrOut(serializers.Serializer):
    qr_image = serializers.CharField(allow_blank=True, allow_null=True, help_text="A data: URL of the QR image.")
    qr_code = serializers.CharField(allow_blank=True, allow_null=True, help_text="The QR's text.")
    pairing_code = serializers.CharField(allow_blank=True, allow_null=True)


class AcceptedOut(serializers.Serializer):
    status = serializers.CharField(help_text="`requested`: the provider is asked in the background.")


def number_output(number: dict) -> dict:
    """Return the API's JSON for a number, from its public fields (see crm.selectors.NUMBER_FIELDS)."""
    return {
        "id": number["id"],
        "name": number["name"],
        "phone": number["phone"],
        "provider": number["provider"],
        "state": number["state"],
        "is_connected": number["state"] == WhatsAppNumber.State.CONNECTED,
        "last_seen_at": iso(number["last_seen_at"]),
        "created_at": iso(number["created_at"]),
    }


def _number_fields(number: WhatsAppNumber) -> dict:
    return {
        "id": number.pk,
        "name": number.name,
        "phone": number.phone,
        "provider": number.provider,
        "state": number.state,
        "last_seen_at": number.last_seen_at,
        "created_at": number.created_at,
    }


# --- views -------------------------------------------------------------------------------------------
class NumberListApi(OrganizationApi):
    def get_permissions(self):
        return [IsOrganizationAdmin()] if self.request.method == "POST" else super().get_permissions()

    @api_doc(summary="List the organization's numbers", responses={200: NumberListOut})
    def get(self, request):
        numbers = number_rows_cached(organization_id=self.organization_id())
        return Response({"results": [number_output(number) for number in numbers]})

    @api_doc(
        summary="Add a number (within the plan's limit)",
        request=NumberCreateIn,
        responses={201: NumberOut},
        errors={409: "The plan's number limit is reached (`number_limit_reached`)."},
        description="The number is provisioned on its provider on first need; connect it with `/connect/`.",
    )
    def post(self, request):
        data = NumberCreateIn(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            number = number_create(
                organization=request_organization(request),
                name=data.validated_data["name"],
                provider=data.validated_data.get("provider", ""),
                credentials=data.validated_data.get("credentials"),
            )
        except NumberLimitReachedError as error:
            raise ApiError(
                status_code=409, code="number_limit_reached", message=str(error), details={"limit": error.limit}
            ) from error
        return Response(number_output(_number_fields(number)), status=status.HTTP_201_CREATED)


class NumberDetailApi(OrganizationApi):
    def get_permissions(self):
        return [IsOrganizationAdmin()] if self.request.method == "DELETE" else super().get_permissions()

    @api_doc(summary="Get a number", responses={200: NumberOut})
    def get(self, request, number_id: int):
        return Response(number_output(_number_fields(number_of_request(self, number_id))))

    @api_doc(
        summary="Delete a number with its chats and history",
        responses={204: OpenApiResponse(description="Deleted.")},
    )
    def delete(self, request, number_id: int):
        number_delete(number=number_of_request(self, number_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


def number_of_request(view: OrganizationApi, number_id: int) -> WhatsAppNumber:
    return get_object_or_404(
        WhatsAppNumber.objects.select_related("server"), pk=number_id, organization_id=view.organization_id()
    )


class NumberStateApi(OrganizationApi):
    @api_doc(summary="A number's connection state", responses={200: NumberStateOut})
    def get(self, request, number_id: int):
        number = number_of_request(self, number_id)
        return Response(
            {
                "id": number.pk,
                "state": number.state,
                "is_connected": number.is_connected,
                "phone": number.phone,
                "last_seen_at": iso(number.last_seen_at),
            }
        )


class NumberQrApi(OrganizationApi):
    @api_doc(
        summary="The number's current QR code or pairing code",
        responses={200: QrOut},
        description="Fresh for QR_CACHE_SECONDS after the provider sent it; 404 `qr_expired` otherwise.",
    )
    def get(self, request, number_id: int):
        number = number_of_request(self, number_id)
        qr = qr_current(number.pk)
        if qr is None:
            raise ApiError(status_code=404, code="qr_expired", message="No fresh QR code; connect the number again.")
        return Response({name: qr.get(name) for name in ("qr_image", "qr_code", "pairing_code")})


class NumberConnectApi(OrganizationApi):
    permission_classes = [IsOrganizationAdmin]

    @api_doc(
        summary="Ask for a QR code (or a pairing code for `phone`)",
        request=NumberConnectIn,
        responses={202: AcceptedOut},
        description="The provider is called in the background; then read `/qr/` (or follow `number.state`).",
    )
    def post(self, request, number_id: int):
        number = number_of_request(self, number_id)
        data = NumberConnectIn(data=request.data)
        data.is_valid(raise_exception=True)
        number_connect_request(number=number, phone=data.validated_data.get("phone", ""))
        return Response({"status": "requested"}, status=status.HTTP_202_ACCEPTED)


class NumberLogoutApi(OrganizationApi):
    permission_classes = [IsOrganizationAdmin]

    @api_doc(summary="Log the number's WhatsApp account out", request=None, responses={202: AcceptedOut})
    def post(self, request, number_id: int):
        number_logout_request(number=number_of_request(self, number_id))
        return Response({"status": "requested"}, status=status.HTTP_202_ACCEPTED)
