"""Numbers of a self-hosted provider are spread over its healthy servers with room."""

import pytest

from crm.models import ProviderServer
from crm.selectors import number_provider_target
from crm.services import NoServerAvailableError, number_server_place, provider_servers_drain
from tests.factories import ProviderServerFactory, WhatsAppNumberFactory

pytestmark = pytest.mark.django_db


def _evolution_number(**fields):
    return WhatsAppNumberFactory(provider="evolution", **fields)


def test_numbers_are_spread_over_two_servers_by_spare_room():
    small = ProviderServerFactory(capacity=2)
    large = ProviderServerFactory(capacity=4)
    placed = [number_server_place(number=_evolution_number()) for _ in range(6)]
    assert placed.count(small) == 2
    assert placed.count(large) == 4


def test_choice_is_stored_and_every_later_call_gets_the_same_server():
    ProviderServerFactory()
    number = _evolution_number()
    first = number_server_place(number=number)
    ProviderServerFactory()  # a new, emptier server does not move it
    number.refresh_from_db()
    assert number.server == first
    assert number_server_place(number=number) == first
    assert number_provider_target(number).base_url == first.base_url.rstrip("/")


def test_drained_server_gets_no_new_numbers_but_keeps_its_own():
    drained = ProviderServerFactory()
    kept = _evolution_number(server=drained)
    assert provider_servers_drain(servers=ProviderServer.objects.filter(pk=drained.pk)) == 1
    other = ProviderServerFactory()
    assert number_server_place(number=_evolution_number()) == other
    kept.refresh_from_db()
    assert kept.server == drained


def test_unhealthy_server_gets_no_new_numbers():
    ProviderServerFactory(is_healthy=False)
    healthy = ProviderServerFactory()
    assert {number_server_place(number=_evolution_number()) for _ in range(3)} == {healthy}


def test_full_unhealthy_or_draining_everywhere_is_a_clear_error():
    full = ProviderServerFactory(capacity=1)
    _evolution_number(server=full)
    ProviderServerFactory(is_healthy=False)
    ProviderServerFactory(is_draining=True)
    number = _evolution_number()
    with pytest.raises(NoServerAvailableError, match="No Evolution API v2 server has room"):
        number_server_place(number=number)
    number.refresh_from_db()
    assert number.server is None


def test_servers_of_another_provider_are_not_used():
    ProviderServerFactory(provider="fake")
    with pytest.raises(NoServerAvailableError):
        number_server_place(number=_evolution_number())


def test_hosted_providers_need_no_server():
    number = WhatsAppNumberFactory(provider="green_api")
    assert number_server_place(number=number) is None


def test_target_carries_the_server_key_secret_and_a_per_number_webhook_url(settings):
    settings.PUBLIC_BASE_URL = "https://crm.example.test"
    server = ProviderServerFactory(api_key="global-key")
    number = _evolution_number(server=server, instance_name="clinic-main")
    target = number_provider_target(number)
    assert target.api_key == "global-key"
    assert target.webhook_secret == number.webhook_secret
    assert target.webhook_url == "https://crm.example.test/webhooks/evolution/clinic-main/"
    assert target.breaker_key == f"server-{server.pk}"


def test_hosted_numbers_share_one_circuit_per_provider_host():
    first = WhatsAppNumberFactory(provider="green_api", credentials={"base_url": "https://7105.api.greenapi.com"})
    second = WhatsAppNumberFactory(provider="green_api", credentials={"base_url": "https://7105.api.greenapi.com"})
    elsewhere = WhatsAppNumberFactory(provider="green_api", credentials={"base_url": "https://7700.api.greenapi.com"})
    keys = {number_provider_target(number).breaker_key for number in (first, second, elsewhere)}
    assert keys == {"green_api:7105.api.greenapi.com", "green_api:7700.api.greenapi.com"}


def test_admin_drains_a_server_and_it_gets_no_new_numbers(superuser_client):
    from django.urls import reverse

    drained, other = ProviderServerFactory(), ProviderServerFactory()
    response = superuser_client.post(
        reverse("admin:crm_providerserver_changelist"), {"action": "drain", "_selected_action": [drained.pk]}
    )
    assert response.status_code == 302
    drained.refresh_from_db()
    assert drained.is_draining
    superuser_client.post(
        reverse("admin:crm_providerserver_changelist"), {"action": "undrain", "_selected_action": [other.pk]}
    )
    assert {number_server_place(number=_evolution_number()) for _ in range(3)} == {other}
