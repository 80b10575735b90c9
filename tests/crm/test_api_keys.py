"""API keys on the site (/api-keys/) and in Django admin: admins only, shown once, revocable, walled."""

import re

import pytest
from django.urls import reverse

from crm.models import ApiKey, Membership
from crm.services import api_key_create, api_key_hash
from tests.factories import MembershipFactory, OrganizationFactory

pytestmark = pytest.mark.django_db

KEY = re.compile(r"cnv_[0-9a-f]{8}_[A-Za-z0-9_-]{43}")


def test_an_admin_creates_a_key_that_is_shown_once_and_works(client, org_admin):
    client.force_login(org_admin.user)
    response = client.post(reverse("crm:api-keys"), {"name": "ERP sync"})

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    (secret,) = KEY.findall(response.content.decode())
    api_key = ApiKey.objects.get()
    assert (api_key.name, api_key.organization, api_key.created_by) == (
        "ERP sync",
        org_admin.organization,
        org_admin.user,
    )
    assert api_key.key_hash == api_key_hash(secret)
    assert client.get("/api/v1/numbers/", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    # Never again: the list shows the prefix only.
    listing = client.get(reverse("crm:api-keys")).content.decode()
    assert secret not in listing
    assert api_key.prefix in listing


def test_an_empty_name_is_a_form_error(client, org_admin):
    client.force_login(org_admin.user)
    response = client.post(reverse("crm:api-keys"), {"name": ""})
    assert response.status_code == 200
    assert response.context["form"].errors["name"]
    assert not ApiKey.objects.exists()


def test_an_admin_revokes_a_key(client, org_admin):
    api_key, secret = api_key_create(organization=org_admin.organization, name="old")
    client.force_login(org_admin.user)

    response = client.post(reverse("crm:api-key-revoke", args=[api_key.pk]))

    assert response.status_code == 302
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
    assert client.get("/api/v1/numbers/", headers={"Authorization": f"Bearer {secret}"}).status_code == 401


def test_agents_cannot_see_or_create_keys(client):
    agent = MembershipFactory(role=Membership.Role.AGENT)
    client.force_login(agent.user)
    assert client.get(reverse("crm:api-keys")).status_code == 403
    assert client.post(reverse("crm:api-keys"), {"name": "x"}).status_code == 403
    assert not ApiKey.objects.exists()


def test_an_admin_cannot_revoke_or_see_another_organizations_key(client, org_admin):
    stranger, _ = api_key_create(organization=OrganizationFactory(), name="theirs")
    client.force_login(org_admin.user)

    assert client.post(reverse("crm:api-key-revoke", args=[stranger.pk])).status_code == 404
    assert "theirs" not in client.get(reverse("crm:api-keys")).content.decode()
    stranger.refresh_from_db()
    assert stranger.revoked_at is None


def test_django_admin_creates_a_key_shown_once_in_a_message(org_admin_client, org_admin):
    response = org_admin_client.post(
        reverse("admin:crm_apikey_add"), {"organization": org_admin.organization.pk, "name": "Zapier"}, follow=True
    )

    assert response.status_code == 200
    (secret,) = KEY.findall(" ".join(str(message) for message in response.context["messages"]))
    api_key = ApiKey.objects.get()
    assert api_key.key_hash == api_key_hash(secret)
    assert api_key.created_by == org_admin.user


def test_django_admin_walls_keys_and_revokes_them(org_admin_client, org_admin):
    mine, _ = api_key_create(organization=org_admin.organization, name="mine")
    theirs, _ = api_key_create(organization=OrganizationFactory(), name="theirs")

    listed = org_admin_client.get(reverse("admin:crm_apikey_changelist")).context["cl"].result_list
    assert list(listed) == [mine]
    assert org_admin_client.get(reverse("admin:crm_apikey_change", args=[theirs.pk])).status_code == 302
    org_admin_client.post(
        reverse("admin:crm_apikey_changelist"), {"action": "revoke", "_selected_action": [mine.pk, theirs.pk]}
    )
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.revoked_at is not None
    assert theirs.revoked_at is None


def test_an_org_admin_cannot_create_a_key_for_another_organization(org_admin_client):
    other = OrganizationFactory()
    response = org_admin_client.post(reverse("admin:crm_apikey_add"), {"organization": other.pk, "name": "x"})
    assert response.status_code == 200  # the form again, with an error
    assert response.context["adminform"].form.errors["organization"]
    assert not ApiKey.objects.exists()
