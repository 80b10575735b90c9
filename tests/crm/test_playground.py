"""The provider playground: an admin sends one test message and sees the raw exchange, secrets masked."""

import pytest
from django.urls import reverse

from crm.models import Membership
from crm.selectors import number_provider_target
from providers.evolution import EvolutionAdapter
from providers.fakes.evolution import FakeEvolutionServer
from tests.factories import MembershipFactory, ProviderServerFactory, WhatsAppNumberFactory

pytestmark = pytest.mark.django_db
URL = reverse("admin:provider-test")
API_KEY = "evolution-global-key-123"


@pytest.fixture
def evolution():
    server = FakeEvolutionServer(api_key=API_KEY).start()
    yield server
    server.stop()


@pytest.fixture
def connected_number(evolution):
    """An Evolution number provisioned on the fake and scanned, ready to send."""
    server = ProviderServerFactory(base_url=evolution.url, api_key=API_KEY)
    number = WhatsAppNumberFactory(provider="evolution", server=server, instance_name="playground-1")
    EvolutionAdapter().provision(number_provider_target(number))
    evolution.scan("playground-1")
    return number


def test_superuser_sends_and_sees_the_raw_exchange_with_secrets_masked(superuser_client, connected_number):
    response = superuser_client.post(
        URL, {"number": connected_number.pk, "recipient": "+55 11 91234-5678", "text": "Playground hello"}
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert 'data-testid="playground-result"' in page
    assert "/message/sendText/playground-1" in page
    assert "5511912345678" in page  # the request body as sent
    assert "Playground hello" in page
    assert "201" in page  # Evolution's status for a send
    assert API_KEY not in page
    assert connected_number.webhook_secret not in page


def test_provider_error_is_shown_with_its_kind(superuser_client, connected_number):
    response = superuser_client.post(URL, {"number": connected_number.pk, "recipient": "+5511900000000", "text": "x"})
    page = response.content.decode()
    assert "Permanent error" in page
    assert "not on WhatsApp" in page


def test_bad_recipient_is_a_form_error_and_sends_nothing(superuser_client, connected_number, evolution):
    calls_before = len(evolution.requests)
    response = superuser_client.post(URL, {"number": connected_number.pk, "recipient": "call me", "text": "x"})
    assert "international format" in response.content.decode()
    assert len(evolution.requests) == calls_before


def test_org_admin_picks_only_their_organizations_numbers(client):
    admin = MembershipFactory(role=Membership.Role.ADMIN, user__is_staff=True)
    own = WhatsAppNumberFactory(organization=admin.organization, name="Own line")
    foreign = WhatsAppNumberFactory(name="Foreign line")
    client.force_login(admin.user)
    page = client.get(URL).content.decode()
    assert "Own line" in page
    assert "Foreign line" not in page
    response = client.post(URL, {"number": foreign.pk, "recipient": "+5511912345678", "text": "x"})
    assert "Select a valid choice" in response.content.decode()
    assert own.pk  # the own number stays selectable


def test_agent_cannot_open_the_playground(client):
    agent = MembershipFactory(role=Membership.Role.AGENT)
    client.force_login(agent.user)
    response = client.get(URL)
    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))


def test_admin_pages_link_to_the_playground(superuser_client):
    assert URL in superuser_client.get(reverse("admin:index")).content.decode()
