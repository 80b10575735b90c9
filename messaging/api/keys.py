"""API of the caller's own API key: rotate it."""

from rest_framework import serializers, status
from rest_framework.response import Response

from crm.services import ApiKeyInvalidError, api_key_rotate
from messaging.api.base import OrganizationApi, iso
from messaging.api.errors import ApiError
from messaging.api.permissions import IsApiKey
from messaging.api.schema import api_doc


class RotatedKeyOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    prefix = serializers.CharField()
    key = serializers.CharField(help_text="The new key; shown only now.")
    previous_key_expires_at = serializers.DateTimeField(help_text="The key you called with works until then.")


class KeyRotateApi(OrganizationApi):
    permission_classes = [IsApiKey]

    @api_doc(
        summary="Issue a new API key; the one calling keeps working for a grace period",
        request=None,
        responses={201: RotatedKeyOut},
        description=(
            "The grace period is API_KEY_ROTATION_GRACE_SECONDS (24 hours by default); then the old key gets 401."
        ),
    )
    def post(self, request):
        try:
            new_key, secret = api_key_rotate(api_key=request.auth)
        except ApiKeyInvalidError as error:
            raise ApiError(status_code=401, code="authentication_failed", message=str(error)) from error
        request.auth.refresh_from_db(fields=["expires_at"])
        body = {
            "id": new_key.pk,
            "name": new_key.name,
            "prefix": new_key.prefix,
            "key": secret,
            "previous_key_expires_at": iso(request.auth.expires_at),
        }
        return Response(body, status=status.HTTP_201_CREATED)
