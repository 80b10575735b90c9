"""Login, logout and the home page that says which organization you are in."""

import pytest
from django.urls import reverse

from crm.models import Membership
from tests.factories import PASSWORD, ChatFactory, MembershipFactory, UserFactory, WhatsAppNumberFactory

pytestmark = pytest.mark.django_db


def test_home_requires_login(client):
    response = client.get(reverse("crm:home"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_agent_logs_in_and_sees_their_organization(client):
    membership = MembershipFactory(organization__name="Acme Dental")
    response = client.post(reverse("login"), {"username": membership.user.username, "password": PASSWORD}, follow=True)
    assert response.status_code == 200
    page = response.content.decode()
    assert "You are in Acme Dental" in page
    assert "your role: Agent" in page


def test_wrong_password_shows_a_form_error_and_no_session(client):
    membership = MembershipFactory()
    response = client.post(reverse("login"), {"username": membership.user.username, "password": "nope"})
    assert response.status_code == 200
    assert "didn't match" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_logout_ends_the_session(client):
    membership = MembershipFactory()
    client.force_login(membership.user)
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert client.get(reverse("crm:home")).status_code == 302


def test_home_counts_only_the_current_organizations_data(client):
    membership = MembershipFactory()
    WhatsAppNumberFactory(organization=membership.organization, state="connected")
    ChatFactory(organization=membership.organization)
    ChatFactory()  # another organization's chat and number
    client.force_login(membership.user)
    response = client.get(reverse("crm:home"))
    assert response.context["overview"] == {
        "numbers": 2,
        "connected_numbers": 1,
        "open_chats": 1,
        "members": 1,
        "silent_numbers": [],
    }


def test_member_of_two_organizations_switches_between_them(client):
    user = UserFactory()
    first = MembershipFactory(user=user, organization__name="Aardvark Ltd")
    second = MembershipFactory(user=user, organization__name="Zebra Inc", role=Membership.Role.ADMIN)
    client.force_login(user)
    assert "You are in Aardvark Ltd" in client.get(reverse("crm:home")).content.decode()
    response = client.post(reverse("crm:organization-switch"), {"organization_id": second.organization_id}, follow=True)
    assert "You are in Zebra Inc" in response.content.decode()
    assert first.organization.name in response.content.decode()  # still offered in the switcher


def test_switching_to_an_organization_you_are_not_in_is_refused(client):
    membership = MembershipFactory(organization__name="Mine")
    stranger = MembershipFactory(organization__name="Theirs")
    client.force_login(membership.user)
    response = client.post(reverse("crm:organization-switch"), {"organization_id": stranger.organization_id})
    assert response.status_code == 404
    assert "You are in Mine" in client.get(reverse("crm:home")).content.decode()


@pytest.mark.parametrize("value", ["", "abc", "1; DROP TABLE"])
def test_switch_with_garbage_id_is_a_clear_400(client, value):
    membership = MembershipFactory()
    client.force_login(membership.user)
    response = client.post(reverse("crm:organization-switch"), {"organization_id": value})
    assert response.status_code == 400


def test_user_without_organization_is_told_so(client):
    client.force_login(UserFactory())
    assert "not in any organization" in client.get(reverse("crm:home")).content.decode()


def test_organization_name_is_escaped(client):
    membership = MembershipFactory(organization__name="<script>alert(1)</script>")
    client.force_login(membership.user)
    page = client.get(reverse("crm:home")).content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;" in page
