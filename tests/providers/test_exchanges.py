"""The recorded provider exchanges (the playground's raw view) never show a secret."""

from providers.base import ProviderTarget
from providers.evolution import EvolutionAdapter
from providers.exchanges import MASK, exchanges_recorded
from providers.fakes.evolution import FakeEvolutionServer
from providers.http import provider_request

API_KEY = "evolution-global-key-123"
WEBHOOK_SECRET = "per-number-webhook-secret-456"


def test_secrets_in_headers_and_bodies_are_masked():
    with FakeEvolutionServer(api_key=API_KEY) as fake:
        target = ProviderTarget(
            provider="evolution",
            instance_name="masked-1",
            base_url=fake.url,
            api_key=API_KEY,
            webhook_url="http://127.0.0.1:9/hooks/",
            webhook_secret=WEBHOOK_SECRET,
            breaker_key="exchanges-test",
        )
        with exchanges_recorded(secrets=[API_KEY, WEBHOOK_SECRET]) as exchanges:
            EvolutionAdapter().provision(target)  # its body carries the webhook secret as a header value
    recorded = repr(exchanges)
    assert exchanges
    assert exchanges[0].status == 201
    assert API_KEY not in recorded
    assert WEBHOOK_SECRET not in recorded
    assert MASK in exchanges[0].request_body


def test_nothing_is_recorded_outside_a_recording():
    with FakeEvolutionServer(api_key=API_KEY) as fake:
        target = ProviderTarget(provider="evolution", instance_name="x", base_url=fake.url, breaker_key="exchanges-2")
        with exchanges_recorded(secrets=[]) as exchanges:
            pass
        provider_request(target, "GET", fake.url + "/")
    assert exchanges == []
