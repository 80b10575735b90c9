"""API keys: stored only as a hash, Bearer auth, revocation, rotation with a grace period, last use."""

from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from crm.models import ApiKey
from crm.services import api_key_create, api_key_hash, api_key_revoke, api_key_used
from tests.factories import MembershipFactory
from tests.messaging.api.conftest import assert_error_shape

NUMBERS = "/api/v1/numbers/"


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


def test_revoked_key_is_401_at_once(api, org_a):
    assert api.get(NUMBERS).status_code == 200
    api_key_revoke(api_key=org_a.api_key)
    assert_error_shape(api.get(NUMBERS), 401, "authentication_failed")


def test_key_of_a_suspended_organization_is_401(api, org_a):
    org_a.organization.is_active = False
    org_a.organization.save()
    assert_error_shape(api.get(NUMBERS), 401)


def test_rotated_key_works_for_the_grace_period_then_401(api, org_a, settings):
    settings.API_KEY_ROTATION_GRACE_SECONDS = 3600
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
    # ...and once it is over (moved there by the row's expiry, not by sleeping), it is refused.
    ApiKey.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
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


def test_last_used_is_written_at_most_once_a_minute(api, org_a, django_assert_num_queries):
    assert org_a.api_key.last_used_at is None
    api.get(NUMBERS)
    first = ApiKey.objects.get(pk=org_a.api_key.pk).last_used_at
    assert first is not None
    api.get(NUMBERS)
    assert ApiKey.objects.get(pk=org_a.api_key.pk).last_used_at == first

    key = ApiKey.objects.get(pk=org_a.api_key.pk)
    with django_assert_num_queries(0):
        api_key_used(api_key=key, now=first + timedelta(seconds=59))
    api_key_used(api_key=key, now=first + timedelta(seconds=61))
    assert ApiKey.objects.get(pk=key.pk).last_used_at == first + timedelta(seconds=61)


def test_a_signed_in_member_still_uses_the_api_with_the_session(client, org_a):
    membership = MembershipFactory(organization=org_a.organization)
    client.force_login(membership.user)
    response = client.get(NUMBERS)
    assert response.status_code == 200
    assert "X-RateLimit-Limit" not in response.headers
