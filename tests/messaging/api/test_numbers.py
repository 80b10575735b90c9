"""Numbers over the API: the cached list (never stale), create within the plan, state, connect, delete."""

from django.urls import reverse

from crm.cache import redis_client
from crm.models import WhatsAppNumber
from crm.services import number_delete
from messaging.services.inbound import number_connection_update, number_qr_update
from providers.base import ConnectionUpdate, QrUpdate
from tests.factories import MembershipFactory, PlanFactory, WhatsAppNumberFactory
from tests.messaging.api.conftest import assert_error_shape

NUMBERS = "/api/v1/numbers/"


def names(response) -> list[str]:
    return [number["name"] for number in response.json()["results"]]


def test_create_within_the_plan_then_409(api, org_a, django_capture_on_commit_callbacks):
    org_a.organization.plan = PlanFactory(code="two", name="Two", max_numbers=2)
    org_a.organization.save()
    with django_capture_on_commit_callbacks(execute=True):
        first = api.post(NUMBERS, {"name": "Sales", "provider": "fake"}, format="json")
        api.post(NUMBERS, {"name": "Support", "provider": "fake"}, format="json")
        third = api.post(NUMBERS, {"name": "Extra", "provider": "fake"}, format="json")

    assert first.status_code == 201
    assert (first.json()["state"], first.json()["is_connected"]) == ("not_provisioned", False)
    error = assert_error_shape(third, 409, "number_limit_reached")
    assert error["details"] == {"limit": 2}
    assert WhatsAppNumber.objects.filter(organization=org_a.organization).count() == 2


def test_bad_number_bodies_are_400(api):
    # Found by schemathesis: PostgreSQL cannot store NUL characters, so they must be refused at the edge.
    for body, field in (
        ({}, "name"),
        ({"name": "  "}, "name"),
        ({"name": "x", "provider": "telegram"}, "provider"),
        ({"name": "x", "credentials": {"api_token": "a\u0000b"}}, "credentials"),
        ({"name": "x", "credentials": {"a\u0000": "b"}}, "credentials"),
        ({"name": "x\u0000"}, "name"),
    ):
        error = assert_error_shape(api.post(NUMBERS, body, format="json"), 400, "invalid")
        assert field in error["details"]["fields"]
    assert not WhatsAppNumber.objects.exists()


def test_the_cached_list_follows_every_change(api, org_a, django_capture_on_commit_callbacks):
    number = WhatsAppNumberFactory(organization=org_a.organization, name="Alpha")
    assert names(api.get(NUMBERS)) == ["Alpha"]  # now cached
    # A row changed behind the services' back is not seen: the list really is served from the cache.
    WhatsAppNumber.objects.filter(pk=number.pk).update(name="Renamed quietly")
    assert names(api.get(NUMBERS)) == ["Alpha"]

    # Every service that changes a number makes the cache old once it commits.
    with django_capture_on_commit_callbacks(execute=True):
        number_connection_update(number=number, event=ConnectionUpdate(state="connected"))
    listed = api.get(NUMBERS).json()["results"]
    assert (listed[0]["name"], listed[0]["state"]) == ("Renamed quietly", "connected")

    with django_capture_on_commit_callbacks(execute=True):
        number_connection_update(number=number, event=ConnectionUpdate(state="disconnected"))
        number_qr_update(number=number, event=QrUpdate(qr_code="2@abc"))
    assert api.get(NUMBERS).json()["results"][0]["state"] == "waiting_for_qr_scan"

    with django_capture_on_commit_callbacks(execute=True):
        api.post(NUMBERS, {"name": "Beta", "provider": "fake"}, format="json")
    assert names(api.get(NUMBERS)) == ["Beta", "Renamed quietly"]

    with django_capture_on_commit_callbacks(execute=True):
        number_delete(number=number)
    assert names(api.get(NUMBERS)) == ["Beta"]


def test_an_uncommitted_change_leaves_the_cache_alone(api, org_a, settings):
    WhatsAppNumberFactory(organization=org_a.organization, name="Alpha")
    api.get(NUMBERS)
    version_key = f"{settings.CACHE_KEY_PREFIX}:cache-version:numbers:{org_a.organization.pk}"
    api.post(NUMBERS, {"name": "Beta", "provider": "fake"}, format="json")  # on_commit never runs here
    assert redis_client().get(version_key) is None
    assert names(api.get(NUMBERS)) == ["Alpha"]


def test_the_admin_edit_of_a_number_is_seen_at_once(api, org_a, superuser_client, django_capture_on_commit_callbacks):
    number = WhatsAppNumberFactory(organization=org_a.organization, name="Alpha")
    api.get(NUMBERS)
    with django_capture_on_commit_callbacks(execute=True):
        superuser_client.post(
            reverse("admin:crm_whatsappnumber_change", args=[number.pk]),
            {
                "organization": org_a.organization.pk,
                "name": "From admin",
                "provider": "fake",
                "instance_name": number.instance_name,
                "phone": number.phone,
                "state": number.state,
                "webhook_secret": number.webhook_secret,
                "credentials": "{}",
            },
        )
    assert names(api.get(NUMBERS)) == ["From admin"]


def test_state_qr_connect_logout_delete(api, org_a, django_capture_on_commit_callbacks):
    number = WhatsAppNumberFactory(organization=org_a.organization)
    state = api.get(reverse("api:number-state", args=[number.pk])).json()
    assert (state["state"], state["is_connected"]) == ("not_provisioned", False)
    assert_error_shape(api.get(reverse("api:number-qr", args=[number.pk])), 404, "qr_expired")
    with django_capture_on_commit_callbacks(execute=True):
        number_qr_update(number=number, event=QrUpdate(qr_code="2@xyz", pairing_code="ABCD-1234"))
    qr = api.get(reverse("api:number-qr", args=[number.pk])).json()
    assert (qr["qr_code"], qr["pairing_code"]) == ("2@xyz", "ABCD-1234")

    with django_capture_on_commit_callbacks() as callbacks:
        connect = api.post(
            reverse("api:number-connect", args=[number.pk]), {"phone": "+55 11 91234-5678"}, format="json"
        )
        logout = api.post(reverse("api:number-logout", args=[number.pk]))
    assert (connect.status_code, logout.status_code) == (202, 202)
    assert len(callbacks) == 2  # each enqueues its provider task after commit
    bad = api.post(reverse("api:number-connect", args=[number.pk]), {"phone": "12"}, format="json")
    assert "phone" in assert_error_shape(bad, 400, "invalid")["details"]["fields"]

    assert api.delete(reverse("api:number-detail", args=[number.pk])).status_code == 204
    assert not WhatsAppNumber.objects.filter(pk=number.pk).exists()


def test_agents_session_cannot_add_or_delete_numbers(client, org_a):
    agent = MembershipFactory(organization=org_a.organization)
    number = WhatsAppNumberFactory(organization=org_a.organization)
    client.force_login(agent.user)
    assert client.get(NUMBERS).status_code == 200
    assert_error_shape(client.post(NUMBERS, {"name": "x"}, content_type="application/json"), 403)
    assert_error_shape(client.delete(reverse("api:number-detail", args=[number.pk])), 403)
