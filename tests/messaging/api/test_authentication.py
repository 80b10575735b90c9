"""API keys: stored only as a hash, Bearer auth, revocation, rotation with a grace period, last use."""

from contextlib import contextmanager
from datetime import timedelta
from unittest import mock

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from crm.cache import redis_client
from crm.models import ApiKey
from crm.services import api_key_create, api_key_hash, api_key_revoke, api_key_used, api_keys_changed
from tests.factories import MembershipFactory, OrganizationFactory
from tests.messaging.api.conftest import assert_error_shape

NUMBERS = "/api/v1/numbers/"


@contextmanager
def freeze_clock(moment):
    """Make the authentication's "now" a later moment (no sleeping through a grace period)."""
    with mock.patch("messaging.api.authentication.timezone.now", return_value=moment):
        yield


def test_a_key_is_stored_only_as_its_hash(org_a):
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM crm_apikey")
        rows = cursor.fetchall()
    stored = " ".join(str(value) for row in rows for value in row)

    assert org_a.secret not in stored
    secret_part = org_a.secret.rsplit("_", 1)[1]
    assert secret_part not in stored
    assert org_a.api_key.key_hash == api_key_hash(org_a.secret)
    assert org_a.secret.startswith(org_a.api_key.prefix + "_")


def test_two_keys_never_share_a_prefix_or_hash(org_a):
    keys = [api_key_create(organization=org_a.organization, name=f"k{n}")[0] for n in range(20)]
    assert len({key.prefix for key in keys}) == len({key.key_hash for key in keys}) == 20


def test_bearer_key_authenticates_for_its_organization(api, org_a):
    response = api.get(NUMBERS)
    assert response.status_code == 200
    assert response.json() == {"results": []}


@pytest.mark.parametrize("header", ["Bearer cnv_00000000_nope", "Bearer ", "Bearer two words", "bearer cnv_x_y"])
def test_unknown_or_malformed_key_is_401(db, header):
    response = APIClient().get(NUMBERS, HTTP_AUTHORIZATION=header)
    assert_error_shape(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_no_credentials_is_401(db):
    response = APIClient().get(NUMBERS)
    assert_error_shape(response, 401, "not_authenticated")


def test_revoked_key_is_401_at_once(api, org_a, django_capture_on_commit_callbacks):
    assert api.get(NUMBERS).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        api_key_revoke(api_key=org_a.api_key)
    assert_error_shape(api.get(NUMBERS), 401, "authentication_failed")


def test_key_of_a_suspended_organization_is_401(api, org_a, django_capture_on_commit_callbacks):
    assert api.get(NUMBERS).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        org_a.organization.is_active = False
        org_a.organization.save()
        api_keys_changed()  # what the organization admin does on save
    assert_error_shape(api.get(NUMBERS), 401)


def test_rotated_key_works_for_the_grace_period_then_401(api, org_a, settings, django_capture_on_commit_callbacks):
    settings.API_KEY_ROTATION_GRACE_SECONDS = 3600
    assert api.get(NUMBERS).status_code == 200  # cached before the rotation
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(reverse("api:key-rotate"))

    assert response.status_code == 201
    body = response.json()
    new_client = APIClient()
    new_client.credentials(HTTP_AUTHORIZATION=f"Bearer {body['key']}")
    assert new_client.get(NUMBERS).status_code == 200
    old = ApiKey.objects.get(pk=org_a.api_key.pk)
    remaining = (old.expires_at - timezone.now()).total_seconds()
    assert 3590 < remaining <= 3600
    assert body["previous_key_expires_at"] == old.expires_at.isoformat()
    # Within the grace period the old key still works...
    assert api.get(NUMBERS).status_code == 200
    # ...and once it is over (the clock moved past it, no sleeping), it is refused.
    with freeze_clock(old.expires_at + timedelta(seconds=1)):
        assert_error_shape(api.get(NUMBERS), 401, "authentication_failed")
    assert new_client.get(NUMBERS).status_code == 200


def test_rotating_twice_never_extends_the_first_keys_grace(api, org_a, settings):
    settings.API_KEY_ROTATION_GRACE_SECONDS = 3600
    assert api.post(reverse("api:key-rotate")).status_code == 201
    first_expiry = ApiKey.objects.get(pk=org_a.api_key.pk).expires_at
    settings.API_KEY_ROTATION_GRACE_SECONDS = 7200
    assert api.post(reverse("api:key-rotate")).status_code == 201
    assert ApiKey.objects.get(pk=org_a.api_key.pk).expires_at == first_expiry
    assert ApiKey.objects.filter(organization=org_a.organization).count() == 3


def test_rotate_needs_an_api_key_not_a_session(client, org_a):
    membership = MembershipFactory(organization=org_a.organization, role="admin")
    client.force_login(membership.user)
    response = client.post(reverse("api:key-rotate"))
    assert_error_shape(response, 403, "permission_denied")


def test_last_used_is_written_at_most_once_a_minute(api, org_a, django_assert_num_queries, settings):
    assert org_a.api_key.last_used_at is None
    api.get(NUMBERS)
    first = ApiKey.objects.get(pk=org_a.api_key.pk).last_used_at
    assert first is not None
    key = ApiKey.objects.get(pk=org_a.api_key.pk)
    with django_assert_num_queries(0):
        assert api_key_used(api_key=key) is False  # within the minute: not even a query
    api.get(NUMBERS)
    assert ApiKey.objects.get(pk=key.pk).last_used_at == first

    redis_client().delete(f"{settings.CACHE_KEY_PREFIX}:api-key-used:{key.pk}")  # the minute is over
    assert api_key_used(api_key=key, now=first + timedelta(seconds=61)) is True
    assert ApiKey.objects.get(pk=key.pk).last_used_at == first + timedelta(seconds=61)


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_of_one_key_elect_one_writer():
    from concurrent.futures import ThreadPoolExecutor

    api_key, _ = api_key_create(organization=OrganizationFactory(), name="busy")

    def use(_) -> bool:
        try:
            return api_key_used(api_key=ApiKey.objects.get(pk=api_key.pk))
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=20) as pool:
        wrote = list(pool.map(use, range(20)))
    assert wrote.count(True) == 1
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at is not None


def test_a_revoked_key_is_refused_although_it_was_cached(api, org_a, django_capture_on_commit_callbacks):
    assert api.get(NUMBERS).status_code == 200  # the key's entry is cached now
    with django_capture_on_commit_callbacks(execute=True):
        api_key_revoke(api_key=ApiKey.objects.get(pk=org_a.api_key.pk))
    assert_error_shape(api.get(NUMBERS), 401, "authentication_failed")


def test_an_expiry_moved_in_the_database_is_seen_once_keys_change(api, org_a, django_capture_on_commit_callbacks):
    assert api.get(NUMBERS).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        ApiKey.objects.filter(pk=org_a.api_key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
        api_keys_changed()
    assert_error_shape(api.get(NUMBERS), 401, "authentication_failed")
