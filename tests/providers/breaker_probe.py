"""Run in a second process by the breaker tests: one call through the breaker, the outcome printed.

Usage: python -m tests.providers.breaker_probe <breaker key> <url>
"""

import os
import sys

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from providers.base import ProviderError, ProviderTarget
    from providers.breaker import breaker_state
    from providers.http import provider_request

    key, url = sys.argv[1], sys.argv[2]
    target = ProviderTarget(provider="fake", instance_name="probe", breaker_key=key)
    try:
        provider_request(target, "GET", url)
        outcome = "ok"
    except ProviderError as error:
        outcome = "circuit-open" if error.circuit_open else "failed"
    print(f"{outcome} {breaker_state(key)}")


if __name__ == "__main__":
    main()
