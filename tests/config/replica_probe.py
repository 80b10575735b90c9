"""Run with DATABASE_URL (primary) and DATABASE_REPLICA_URL (a second real database) set; prints JSON.

The two databases hold different plan rows, so which one answered a read is plain to see.
"""

import json
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.http import HttpResponse, JsonResponse  # noqa: E402
from django.test import RequestFactory  # noqa: E402

from config.db_router import PIN_COOKIE, PrimaryPinMiddleware, replica_reads  # noqa: E402
from crm.models import Plan  # noqa: E402


def plan_codes() -> list[str]:
    return sorted(Plan.objects.filter(code__startswith="probe-").values_list("code", flat=True))


@replica_reads
def read_only(request):
    return JsonResponse({"codes": plan_codes()})


@replica_reads
def write_then_read(request):
    Plan.objects.create(
        code="probe-written", name="W", max_numbers=1, api_requests_per_minute=1, default_provider="fake"
    )
    return JsonResponse({"codes": plan_codes()})


def main() -> None:
    factory = RequestFactory()
    pin = PrimaryPinMiddleware(lambda request: HttpResponse())
    pinned = factory.get("/")
    pinned.COOKIES[PIN_COOKIE] = "1"
    outcome = {
        "undecorated": plan_codes(),
        "replica_view": json.loads(read_only(factory.get("/")).content)["codes"],
        "after_a_write": json.loads(write_then_read(factory.get("/")).content)["codes"],
        "pinned_browser": json.loads(read_only(pinned).content)["codes"],
        "post_pins_the_browser": PIN_COOKIE in pin(factory.post("/")).cookies,
        "get_pins_nothing": PIN_COOKIE in pin(factory.get("/")).cookies,
    }
    print(json.dumps(outcome))


if __name__ == "__main__":
    main()
