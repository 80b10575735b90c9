"""The API's one error shape: `{"error": {"code", "message", "details"}}`, for every failure."""

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler


class ApiError(exceptions.APIException):
    """An error a view raises with its own code, message, details and headers."""

    def __init__(self, *, status_code: int, code: str, message: str, details=None, headers=None):
        super().__init__(detail=message, code=code)
        self.status_code = status_code
        self.error_code = code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}


_CODES = {
    status.HTTP_400_BAD_REQUEST: "invalid",
    status.HTTP_401_UNAUTHORIZED: "not_authenticated",
    status.HTTP_403_FORBIDDEN: "permission_denied",
    status.HTTP_404_NOT_FOUND: "not_found",
    status.HTTP_405_METHOD_NOT_ALLOWED: "method_not_allowed",
    status.HTTP_406_NOT_ACCEPTABLE: "not_acceptable",
    status.HTTP_415_UNSUPPORTED_MEDIA_TYPE: "unsupported_media_type",
    status.HTTP_429_TOO_MANY_REQUESTS: "throttled",
}


def error_body(*, code: str, message: str, details=None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def api_exception_handler(exc, context):
    """Answer every exception DRF handles with the one error shape; others stay 500s."""
    if isinstance(exc, ApiError):
        return Response(
            error_body(code=exc.error_code, message=exc.message, details=exc.details),
            status=exc.status_code,
            headers=exc.headers,
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        message, details = "The request is not valid.", {"fields": exc.detail}
    else:
        message, details = str(exc.detail), {}
    codes = exc.get_codes()
    code = codes if isinstance(codes, str) else _CODES.get(response.status_code, "error")
    response.data = error_body(code=code, message=message, details=details)
    return response
