"""The OpenAPI contract (drf-spectacular): the error shape, the security scheme, common answers.

Views document themselves with `api_doc(...)`, which adds the answers every operation can give:
400 (bad input), 401 (no or bad key), 403 (not allowed), 404 (not found or another
organization's), 429 (rate limit, with Retry-After), all in the one error shape, and the
X-RateLimit-* headers that API-key calls carry.
"""

import re

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers


class ConversaAutoSchema(AutoSchema):
    """Operation ids and tags from the URL names and paths (`/api/v1/chats/...` → tag `chats`)."""

    def get_operation_id(self) -> str:
        # From the view's class: NumberListApi + POST → "number_list_post"; unique by construction.
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", type(self.view).__name__.removesuffix("Api")).lower()
        return f"{name}_{self.method.lower()}"

    def get_tags(self) -> list[str]:
        path = self.path.removeprefix("/api/v1/").split("/")
        return [path[0] or "api"]


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "messaging.api.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An organization's API key (created by its admins at /api-keys/).",
        }


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Machine-readable, such as `invalid`, `not_found`, `throttled`.")
    message = serializers.CharField(help_text="For people.")
    details = serializers.DictField(help_text="More about it; for `invalid`, `fields` maps fields to errors.")


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


_COMMON_ERRORS = {
    400: "The request is not valid (bad JSON, fields, parameters or cursor).",
    401: "No API key, or one that is unknown, revoked or past its rotation grace period.",
    403: "Authenticated, but not allowed to do this.",
    404: "No such object in your organization (another organization's objects are 404 too).",
    429: "Too many requests for the key's plan this minute; wait `Retry-After` seconds.",
}
_RATE_HEADERS = [
    OpenApiParameter(name, OpenApiTypes.INT, OpenApiParameter.HEADER, response=True, description=description)
    for name, description in (
        ("X-RateLimit-Limit", "Requests the key may make per minute (its plan's limit). API keys only."),
        ("X-RateLimit-Remaining", "Requests left in the current minute. API keys only."),
        ("X-RateLimit-Reset", "Unix time at which the current minute's count starts again. API keys only."),
    )
] + [
    OpenApiParameter(
        "Retry-After", OpenApiTypes.INT, OpenApiParameter.HEADER, response=[429], description="Seconds to wait."
    )
]


def error_response(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=ErrorSerializer, description=description)


def api_doc(
    *,
    summary: str,
    responses: dict,
    request=None,
    parameters: list | None = None,
    errors: dict[int, str] | None = None,
    description: str = "",
    operation_id: str | None = None,
):
    """Document an operation: its own answers plus every common error, all in the one error shape."""
    all_responses = dict(responses)
    for status, text in {**_COMMON_ERRORS, **(errors or {})}.items():
        all_responses.setdefault(status, error_response(text))
    return extend_schema(
        summary=summary,
        description=description,
        request=request,
        responses=all_responses,
        parameters=[*(parameters or []), *_RATE_HEADERS],
        operation_id=operation_id,
    )
