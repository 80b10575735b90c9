"""The served OpenAPI schema is true: schemathesis calls every operation with generated inputs
(in process, through the whole Django stack) and finds no 5xx and no answer the schema does not
describe (status code, content type, headers, body). Valid and invalid inputs both (schemathesis'
positive and negative modes). SCHEMATHESIS_MAX_EXAMPLES=100 explores further than the suite's 12."""

import os

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis import checks

from crm.models import ApiKey
from crm.services import api_key_create
from messaging.services.webhooks_out import webhook_subscription_create
from tests.factories import ChatFactory, ContactIdentityFactory, MembershipFactory, MessageFactory, PlanFactory

schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]


@pytest.fixture
def connections_kept():
    """Keep the test's connection across calls, as Django's test client does: the WSGI handler
    would close it at the end of each request, inside the test's transaction."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def workspace(db, connections_kept):
    """An organization with a key, a chat with history, a subscription; ids the calls aim at."""
    plan = PlanFactory(code="roomy", name="Roomy", api_requests_per_minute=100_000, max_numbers=50)
    chat = ChatFactory(organization__plan=plan)
    organization = chat.organization
    ContactIdentityFactory(contact=chat.contact)
    message = MessageFactory(chat=chat, direction="out", status="failed", provider_message_id=None)
    MessageFactory(chat=chat)
    subscription = webhook_subscription_create(
        organization=organization, url="https://example.test/hook", events=["chat.assigned"]
    )
    MembershipFactory(organization=organization)
    _, secret = api_key_create(organization=organization, name="schemathesis")
    ids = {
        "number_id": chat.number_id,
        "chat_id": chat.pk,
        "message_id": message.pk,
        "contact_id": chat.contact_id,
        "subscription_id": subscription.pk,
        "delivery_id": 1,
    }
    return secret, ids


@schema.parametrize()
@settings(
    max_examples=int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "12")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_the_api_keeps_its_contract(case, workspace):
    secret, ids = workspace
    if case.path_parameters:
        # Aim at real objects: random ids would only ever find 404s.
        case.path_parameters = {name: ids.get(name, value) for name, value in case.path_parameters.items()}
    if case.operation.path == "/api/v1/auth/rotate-key":
        # Rotating keeps the old key in its grace period; keep the grace so later calls still work.
        ApiKey.objects.update(expires_at=None)
    case.call_and_validate(headers={"Authorization": f"Bearer {secret}"}, checks=CHECKS)
