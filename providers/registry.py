"""The WhatsApp providers Conversa speaks to, by name.

Adapters are registered here by the providers issue; the names are stable because they are stored
on every number and plan.
"""

from django.db import models


class ProviderName(models.TextChoices):
    EVOLUTION = "evolution", "Evolution API v2"
    GREEN_API = "green_api", "Green API"
    META_CLOUD = "meta_cloud", "Meta WhatsApp Cloud API"
    TWILIO = "twilio", "Twilio WhatsApp"
    FAKE = "fake", "Fake (development)"


# Providers whose instances live on servers we run ourselves, so numbers are spread over servers.
SELF_HOSTED_PROVIDERS = frozenset({ProviderName.EVOLUTION})
