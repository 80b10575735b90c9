"""Provider webhooks: prove where a request comes from, then store all it carries in one transaction.

One URL per number (`/webhooks/<provider>/<instance_name>/`, what crm.selectors.number_webhook_url
gives providers), so the number, and with it the secret to check, is known before the body is
read. Meta's app-wide webhook URL is therefore set per number too (its dashboard takes one URL per
app: an app per number, or route by providers.meta_cloud.webhook_phone_number_ids later).

The URL given to the adapter (Twilio signs it) is PUBLIC_BASE_URL + the path we were called on:
exactly the URL we handed the provider, whatever proxies sit in between, so no proxy header needs
to be trusted for it.
"""

import ipaddress
import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from config.log_context import log_fields_bind
from crm.selectors import number_provider_target
from messaging.selectors import number_for_webhook
from messaging.services.inbound import inbound_events_apply
from messaging.views import error_response
from providers.base import WebhookRejectedError, WebhookRequest
from providers.registry import adapter_for

logger = logging.getLogger(__name__)


@csrf_exempt
@require_http_methods(["GET", "POST"])
def provider_webhook(request: HttpRequest, provider: str, instance_name: str) -> HttpResponse:
    number = number_for_webhook(provider=provider, instance_name=instance_name)
    if number is None:
        return error_response(404, "unknown_instance", "No number has this provider and instance name.")
    log_fields_bind(organization_id=number.organization_id)
    body = _body_within_limit(request)
    if body is None:
        return error_response(
            413, "body_too_large", "The webhook body is too large.", {"max_bytes": settings.WEBHOOK_MAX_BODY_BYTES}
        )
    if not _source_allowed(number, request.META.get("REMOTE_ADDR", "")):
        return error_response(403, "source_not_allowed", "This address may not call this number's webhook.")
    webhook = WebhookRequest(
        method=request.method,
        url=settings.PUBLIC_BASE_URL + request.get_full_path(),
        headers=dict(request.headers),
        body=body,
        query={key: request.GET.getlist(key) for key in request.GET},
    )
    try:
        result = adapter_for(number.provider).parse_webhook(number_provider_target(number), webhook)
    except WebhookRejectedError as error:
        logger.info("webhook for %s/%s rejected: %s", provider, instance_name, error.message)
        return error_response(error.status, "webhook_rejected", error.message)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        # An adapter that tripped on a shape it did not expect: the body is the problem, not us.
        logger.warning("webhook for %s/%s unreadable: %r", provider, instance_name, error)
        return error_response(400, "webhook_unreadable", "The webhook body could not be read.")
    with transaction.atomic():
        inbound_events_apply(number=number, events=result.events)
    return HttpResponse(result.response_body, content_type=result.response_content_type)


def _body_within_limit(request: HttpRequest) -> bytes | None:
    limit = settings.WEBHOOK_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return None
    try:
        body = request.body
    except RequestDataTooBig:
        return None
    return body if len(body) <= limit else None


def _source_allowed(number, address: str) -> bool:
    """Whether `address` is in the number's server allowlist (one IP or CIDR a line; empty allows any)."""
    server = number.server
    lines = [line.strip() for line in (server.allowed_webhook_ips if server else "").splitlines()]
    networks = [line for line in lines if line and not line.startswith("#")]
    if not networks:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for network in networks:
        try:
            if ip in ipaddress.ip_network(network, strict=False):
                return True
        except ValueError:
            logger.warning("server %s: ignoring unreadable allowlist entry %r", server.pk, network)
    return False
