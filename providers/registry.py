"""The WhatsApp providers Conversa speaks to, by name, and the adapter for each.

Adding a provider is one module with a ProviderAdapter subclass and one line in ADAPTERS.
"""

from functools import cache

from django.db import models
from django.utils.module_loading import import_string

from providers.base import ProviderAdapter, UnknownProviderError


class ProviderName(models.TextChoices):
    EVOLUTION = "evolution", "Evolution API v2"
    GREEN_API = "green_api", "Green API"
    META_CLOUD = "meta_cloud", "Meta WhatsApp Cloud API"
    TWILIO = "twilio", "Twilio WhatsApp"
    FAKE = "fake", "Fake (development)"


# Providers whose instances live on servers we run ourselves, so numbers are spread over servers.
SELF_HOSTED_PROVIDERS = frozenset({ProviderName.EVOLUTION})

ADAPTERS = {
    ProviderName.EVOLUTION: "providers.evolution.EvolutionAdapter",
    ProviderName.GREEN_API: "providers.green_api.GreenApiAdapter",
    ProviderName.META_CLOUD: "providers.meta_cloud.MetaCloudAdapter",
    ProviderName.TWILIO: "providers.twilio.TwilioAdapter",
    ProviderName.FAKE: "providers.fake.FakeAdapter",
}


@cache
def adapter_for(name: str) -> ProviderAdapter:
    """Return the adapter registered as `name`.

    Raise UnknownProviderError when no adapter has that name.
    """
    try:
        path = ADAPTERS[name]
    except KeyError:
        raise UnknownProviderError(f"No WhatsApp provider is called {name!r}.") from None
    return import_string(path)()
