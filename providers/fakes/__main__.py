"""Run a fake provider server: python -m providers.fakes <provider> [--port N] [--set key=value ...].

Each fake speaks its provider's HTTP contract on loopback; `--set` passes its options (the API key
it accepts, the webhook URL it calls, ...). See each fake's class docstring for them.
"""

import argparse
import contextlib
import logging
import os

from django.utils.module_loading import import_string

FAKE_SERVERS = {
    "evolution": "providers.fakes.evolution.FakeEvolutionServer",
    "green_api": "providers.fakes.green_api.FakeGreenApiServer",
    "meta_cloud": "providers.fakes.meta_cloud.FakeMetaCloudServer",
    "twilio": "providers.fakes.twilio.FakeTwilioServer",
}


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("provider", choices=sorted(FAKE_SERVERS))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a fake's option")
    arguments = parser.parse_args()
    options = dict(item.split("=", 1) for item in arguments.set)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    server = import_string(FAKE_SERVERS[arguments.provider])(host=arguments.host, port=arguments.port, **options)
    print(f"Fake {arguments.provider} listening on {server.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
