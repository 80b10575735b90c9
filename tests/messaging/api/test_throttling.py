"""Per-key rate limits: exact under 50 concurrent clients, headers on every response, 429 past it."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from django.urls import reverse
from rest_framework.test import APIClient

from crm.models import Plan
from crm.services import api_key_create, plan_changed
from messaging.api import throttling
from tests.factories import OrganizationFactory, PlanFactory
from tests.messaging.api.conftest import assert_error_shape

NUMBERS = "/api/v1/numbers/"
HELD_TIME = 1_800_000_030.0  # the middle of a minute: the window cannot turn during a test


@pytest.fixture
def held_clock(monkeypatch):
    monkeypatch.setattr(throttling, "clock", lambda: HELD_TIME)
    return HELD_TIME


def test_fifty_concurrent_clients_get_exactly_the_limit(db, held_clock):
    limit, clients, calls_each = 37, 50, 4

    def client_calls(_):
        return [throttling.rate_limit_count(api_key_id=991, limit=limit).retry_after == 0 for _ in range(calls_each)]

    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = [allowed for batch in pool.map(client_calls, range(clients)) for allowed in batch]

    assert results.count(True) == limit
    assert results.count(False) == clients * calls_each - limit


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_http_clients_get_exactly_the_plan_limit(held_clock):
    plan = PlanFactory(code="tight", name="Tight", api_requests_per_minute=30)
    organization = OrganizationFactory(plan=plan)
    _, secret = api_key_create(organization=organization, name="burst")

    def one_request(_):
        try:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
            response = client.get(NUMBERS)
            return response.status_code, response.headers.get("X-RateLimit-Remaining")
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(one_request, range(80)))

    statuses = [status for status, _ in results]
    assert statuses.count(200) == 30
    assert statuses.count(429) == 50
    # Every admitted request saw a different count: remaining 29, 28, ..., 0 once each.
    remaining = sorted(int(left) for status, left in results if status == 200)
    assert remaining == list(range(30))


def test_every_response_carries_the_limit_headers_and_429_says_when(db, held_clock):
    plan = PlanFactory(code="three", name="Three", api_requests_per_minute=3)
    _, secret = api_key_create(organization=OrganizationFactory(plan=plan), name="k")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")

    answers = [client.get(NUMBERS) for _ in range(3)] + [client.get("/api/v1/chats/999999/")]
    assert [response.status_code for response in answers] == [200, 200, 200, 429]
    for response in answers:
        assert response.headers["X-RateLimit-Limit"] == "3"
        assert response.headers["X-RateLimit-Reset"] == str(int(held_clock // 60 + 1) * 60)
    assert [response.headers["X-RateLimit-Remaining"] for response in answers] == ["2", "1", "0", "0"]
    throttled = answers[-1]
    assert_error_shape(throttled, 429, "throttled")
    assert throttled.headers["Retry-After"] == "30"


def test_errors_carry_the_headers_too(api, held_clock):
    response = api.get("/api/v1/chats/999999/")
    assert_error_shape(response, 404, "not_found")
    assert response.headers["X-RateLimit-Limit"] == "600"


def test_a_plan_change_applies_to_the_next_request(db, held_clock, django_capture_on_commit_callbacks):
    plan = PlanFactory(code="grow", name="Grow", api_requests_per_minute=2)
    _, secret = api_key_create(organization=OrganizationFactory(plan=plan), name="k")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert client.get(NUMBERS).headers["X-RateLimit-Limit"] == "2"  # now cached

    with django_capture_on_commit_callbacks(execute=True):
        Plan.objects.filter(pk=plan.pk).update(api_requests_per_minute=500)
        plan_changed(plan_id=plan.pk)

    assert client.get(NUMBERS).headers["X-RateLimit-Limit"] == "500"


def test_keys_are_counted_separately(db, held_clock):
    for _ in range(3):
        throttling.rate_limit_count(api_key_id=1, limit=3)
    assert throttling.rate_limit_count(api_key_id=1, limit=3).retry_after > 0
    assert throttling.rate_limit_count(api_key_id=2, limit=3).retry_after == 0


def test_limits_show_the_plan_and_todays_quota_use(api, org_a, chat_a, django_capture_on_commit_callbacks):
    api.post(reverse("api:message-send", args=[chat_a.pk]), {"text": "one"}, format="json")
    body = api.get(reverse("api:limits")).json()
    plan = org_a.organization.plan
    assert body["requests_per_minute"] == plan.api_requests_per_minute
    assert (body["messages_per_day"], body["messages_sent_today"]) == (plan.messages_per_day, 1)
    assert (body["max_numbers"], body["numbers"]) == (plan.max_numbers, 1)
    assert body["quota_resets_at"].endswith("T00:00:00+00:00")

    with django_capture_on_commit_callbacks(execute=True):
        Plan.objects.filter(pk=plan.pk).update(max_numbers=9)
        plan_changed(plan_id=plan.pk)
    assert api.get(reverse("api:limits")).json()["max_numbers"] == 9
