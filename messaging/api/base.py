"""What every API view shares: acting for one organization, rate-limit headers, query validation."""

from rest_framework import serializers
from rest_framework.views import APIView

from messaging.api.permissions import HasOrganization, request_organization_id


class OrganizationApi(APIView):
    """An API view acting for the caller's organization; every response carries its rate-limit headers."""

    permission_classes = [HasOrganization]

    def organization_id(self) -> int:
        return request_organization_id(self.request)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        state = getattr(request, "rate_limit", None)
        if state is not None:
            for name, value in state.headers().items():
                response[name] = value
        return response


def query_validated(serializer_class: type[serializers.Serializer], request) -> dict:
    """Return the request's query parameters validated by `serializer_class` (400 in the error shape)."""
    serializer = serializer_class(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def iso(value):
    return value.isoformat() if value else None
