"""Number management pages: admins only, walled per organization, provider calls never in the request."""

import json

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from crm.models import Chat, Contact, Membership, Plan, WhatsAppNumber
from messaging.models import Event, Message
from messaging.tasks.numbers import number_connect_task
from providers.fakes.evolution import FakeEvolutionServer
from tests.factories import (
    ChatFactory,
    MembershipFactory,
    MessageFactory,
    OrganizationFactory,
    PlanFactory,
    ProviderServerFactory,
    WhatsAppNumberFactory,
)
from tests.messaging.outbound_worker import broker_queue

pytestmark = pytest.mark.django_db

GREEN_API = {
    "name": "Sales",
    "provider": "green_api",
    "green_api__id_instance": " 1101234567 ",
    "green_api__api_token": "token-abc",
    "green_api__api_url": "https://7105.api.greenapi.com/",
}


@pytest.fixture
def admin():
    return MembershipFactory(role=Membership.Role.ADMIN, organization__name="Acme Dental")


@pytest.fixture
def admin_client(client, admin):
    client.force_login(admin.user)
    return client


@pytest.fixture
def agent_client(client, admin):
    client.force_login(MembershipFactory(organization=admin.organization).user)
    return client


@pytest.fixture
def number(admin):
    return WhatsAppNumberFactory(organization=admin.organization, name="Reception", provider="evolution")


@pytest.fixture
def fake_evolution():
    server = FakeEvolutionServer(api_key="global-api-key").start()
    yield server
    server.stop()


def _queued_task_names(queue: str) -> list[str]:
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        return [json.loads(raw)["headers"]["task"] for raw in client.lrange(queue, 0, -1)]
    finally:
        client.close()


# --- who may see the pages ----------------------------------------------------------------------------
def test_the_pages_need_a_login(client, number):
    for url in (reverse("crm:number-list"), reverse("crm:number-add"), reverse("crm:number-detail", args=[number.pk])):
        response = client.get(url)
        assert response.status_code == 302
        assert response.url.startswith(reverse("login"))


def test_agents_are_refused_every_page_and_post(agent_client, number):
    pages = ["crm:number-list", "crm:number-add"]
    for name in pages:
        assert agent_client.get(reverse(name)).status_code == 403
    for name in ("crm:number-detail", "crm:number-delete"):
        assert agent_client.get(reverse(name, args=[number.pk])).status_code == 403
    for name in ("crm:number-connect", "crm:number-logout", "crm:number-delete"):
        assert agent_client.post(reverse(name, args=[number.pk])).status_code == 403
    assert agent_client.post(reverse("crm:number-add"), GREEN_API).status_code == 403
    assert WhatsAppNumber.objects.filter(organization=number.organization).count() == 1


def test_another_organizations_number_is_not_found(admin_client, django_capture_on_commit_callbacks):
    theirs = WhatsAppNumberFactory(name="Their secret line")
    for name in ("crm:number-detail", "crm:number-delete"):
        assert admin_client.get(reverse(name, args=[theirs.pk])).status_code == 404
    with django_capture_on_commit_callbacks() as callbacks:
        for name in ("crm:number-connect", "crm:number-logout", "crm:number-delete"):
            assert admin_client.post(reverse(name, args=[theirs.pk])).status_code == 404
    assert callbacks == []
    assert WhatsAppNumber.objects.filter(pk=theirs.pk).exists()
    assert "Their secret line" not in admin_client.get(reverse("crm:number-list")).content.decode()


def test_the_numbers_link_is_shown_to_admins_only(client, admin):
    client.force_login(admin.user)
    assert 'data-testid="nav-numbers"' in client.get(reverse("crm:home")).content.decode()
    client.force_login(MembershipFactory(organization=admin.organization).user)
    assert 'data-testid="nav-numbers"' not in client.get(reverse("crm:home")).content.decode()


def test_posts_need_the_csrf_token(admin, number):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin.user)
    assert client.post(reverse("crm:number-add"), GREEN_API).status_code == 403
    assert client.post(reverse("crm:number-delete", args=[number.pk])).status_code == 403
    assert WhatsAppNumber.objects.filter(organization=admin.organization).count() == 1


# --- list ---------------------------------------------------------------------------------------------
def test_the_list_shows_the_organizations_numbers_with_provider_state_and_last_seen(admin_client, admin):
    WhatsAppNumberFactory(organization=admin.organization, name="Sales", provider="green_api", state="connected")
    WhatsAppNumberFactory(organization=admin.organization, name="Support", provider="evolution")
    page = admin_client.get(reverse("crm:number-list")).content.decode()
    assert page.index("Sales") < page.index("Support")
    assert "Green API" in page
    assert "Evolution API v2" in page
    assert "Connected" in page
    assert "never" in page
    assert "2 of 5 numbers your plan allows." in page


def test_the_list_takes_the_same_queries_for_many_numbers(admin_client, admin, django_assert_max_num_queries):
    WhatsAppNumberFactory(organization=admin.organization)
    with django_assert_max_num_queries(8) as few:
        admin_client.get(reverse("crm:number-list"))
    for _ in range(25):
        number = WhatsAppNumberFactory(organization=admin.organization)
        ChatFactory.create_batch(2, organization=admin.organization, number=number)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = admin_client.get(reverse("crm:number-list"))
    assert response.content.decode().count('data-testid="number-row"') == 26


def test_the_number_pages_take_as_many_queries_for_1000_chats_as_for_one(
    admin_client, admin, number, django_assert_num_queries
):
    urls = [reverse(name, args=[number.pk]) for name in ("crm:number-detail", "crm:number-delete")]
    urls.append(reverse("crm:number-list"))
    ChatFactory(organization=admin.organization, number=number)
    counts = []
    for url in urls:
        with CaptureQueriesContext(connection) as few:
            assert admin_client.get(url).status_code == 200
        counts.append(len(few.captured_queries))
    contacts = Contact.objects.bulk_create(
        Contact(organization=admin.organization, phone=f"+55119{index:08d}") for index in range(1000)
    )
    Chat.objects.bulk_create(Chat(organization=admin.organization, number=number, contact=c) for c in contacts)
    for url, count in zip(urls, counts, strict=True):
        with django_assert_num_queries(count):
            admin_client.get(url)


# --- add ----------------------------------------------------------------------------------------------
def test_the_add_form_starts_on_the_plans_default_provider(client):
    membership = MembershipFactory(role=Membership.Role.ADMIN, organization__plan=Plan.objects.get(code="free"))
    client.force_login(membership.user)
    form = client.get(reverse("crm:number-add")).context["form"]
    assert form["provider"].value() == "green_api"


def test_adding_an_evolution_number_needs_no_credentials(admin_client, admin):
    response = admin_client.post(reverse("crm:number-add"), {"name": " Support ", "provider": "evolution"})
    number = WhatsAppNumber.objects.get(organization=admin.organization)
    assert response.status_code == 302
    assert response.url == reverse("crm:number-detail", args=[number.pk])
    assert (number.name, number.provider, number.state, number.credentials) == (
        "Support",
        "evolution",
        "not_provisioned",
        {},
    )


def test_adding_a_green_api_number_keeps_its_credentials_and_only_those(admin_client, admin):
    posted = {**GREEN_API, "twilio__auth_token": "not for this provider"}
    assert admin_client.post(reverse("crm:number-add"), posted).status_code == 302
    number = WhatsAppNumber.objects.get(organization=admin.organization)
    assert number.credentials == {
        "id_instance": "1101234567",
        "api_token": "token-abc",
        "api_url": "https://7105.api.greenapi.com",
    }


def test_a_meta_number_gets_the_graph_url_by_default(admin_client, admin):
    posted = {
        "name": "Cloud",
        "provider": "meta_cloud",
        "meta_cloud__phone_number_id": "106540352242922",
        "meta_cloud__access_token": "EAAG",
        "meta_cloud__app_secret": "s3cret",
        "meta_cloud__base_url": "",
    }
    assert admin_client.post(reverse("crm:number-add"), posted).status_code == 302
    assert WhatsAppNumber.objects.get().credentials["base_url"] == "https://graph.facebook.com/v21.0"


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"green_api__api_token": ""}, "green_api__api_token", "This provider needs it."),
        ({"green_api__id_instance": "abc"}, "green_api__id_instance", "Use the digits of the idInstance."),
        ({"green_api__api_url": "not a url"}, "green_api__api_url", "Enter a full URL"),
        ({"name": "   "}, "name", "This field is required."),
        ({"name": "x" * 121}, "name", "at most 120 characters"),
        ({"provider": "carrier-pigeon"}, "provider", "Select a valid choice."),
    ],
)
def test_bad_input_shows_a_form_error_and_adds_nothing(admin_client, admin, changes, field, message):
    response = admin_client.post(reverse("crm:number-add"), {**GREEN_API, **changes})
    assert response.status_code == 400
    assert any(message in error for error in response.context["form"].errors[field])
    assert message in response.content.decode()
    assert not WhatsAppNumber.objects.filter(organization=admin.organization).exists()


def test_bad_twilio_credentials_are_refused(admin_client, admin):
    posted = {
        "name": "Twilio",
        "provider": "twilio",
        "twilio__account_sid": "AC123",
        "twilio__auth_token": "token",
        "twilio__from_number": "call me maybe",
    }
    errors = admin_client.post(reverse("crm:number-add"), posted).context["form"].errors
    assert "AC followed by 32" in errors["twilio__account_sid"][0]
    assert "international format" in errors["twilio__from_number"][0]
    assert not WhatsAppNumber.objects.exists()


def test_the_plans_number_limit_is_a_form_error(client):
    membership = MembershipFactory(
        role=Membership.Role.ADMIN, organization__plan=PlanFactory(code="solo", max_numbers=1)
    )
    WhatsAppNumberFactory(organization=membership.organization)
    client.force_login(membership.user)
    response = client.post(reverse("crm:number-add"), {"name": "Second", "provider": "evolution"})
    assert response.status_code == 400
    assert "Your plan allows 1 WhatsApp numbers; delete one before adding another." in response.content.decode()
    assert WhatsAppNumber.objects.filter(organization=membership.organization).count() == 1


def test_an_unknown_method_is_refused(admin_client):
    assert admin_client.put(reverse("crm:number-add")).status_code == 405


# --- detail, connect, log out -------------------------------------------------------------------------
def test_the_number_page_gives_its_script_the_room_the_qr_and_the_cursor(admin_client, admin, number):
    response = admin_client.get(reverse("crm:number-detail", args=[number.pk]))
    live = response.context["live"]
    assert (live["number"], live["state"], live["socket_path"]) == (
        number.pk,
        "not_provisioned",
        f"/ws/numbers/{number.pk}/",
    )
    assert live["qr_url"] == f"/numbers/{number.pk}/qr/"
    assert live["cursor"] == admin.organization.event_sequence
    page = response.content.decode()
    assert 'id="number-live"' in page
    assert "Connect with a QR code" in page
    # Nothing to log out of before it was ever connected: the button waits hidden for a live state.
    assert 'data-testid="logout-form" hidden' in page


def test_connect_enqueues_the_task_and_calls_no_provider_in_the_request(
    admin_client, number, fake_evolution, django_capture_on_commit_callbacks
):
    ProviderServerFactory(base_url=fake_evolution.url)
    with broker_queue() as queue:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            response = admin_client.post(reverse("crm:number-connect", args=[number.pk]))
        queued = _queued_task_names(queue)
    assert response.status_code == 302
    assert len(callbacks) == 1
    assert queued == ["messaging.tasks.numbers.number_connect_task"]
    assert fake_evolution.requests == []
    number.refresh_from_db()
    assert number.state == "not_provisioned"


def test_the_connect_task_puts_the_qr_and_state_on_the_numbers_page(
    admin_client, number, fake_evolution, django_capture_on_commit_callbacks
):
    ProviderServerFactory(base_url=fake_evolution.url)
    with django_capture_on_commit_callbacks(execute=True):
        number_connect_task.apply(args=[number.pk])
    event = Event.objects.get(number=number, type="number.qr")
    assert event.payload["has_image"]
    assert admin_client.get(reverse("messaging:number-qr", args=[number.pk])).json()["qr_image"].startswith("data:")
    page = admin_client.get(reverse("crm:number-detail", args=[number.pk])).content.decode()
    assert "Waiting for the QR code to be scanned" in page
    assert "Get a new QR code" in page
    assert 'data-testid="logout-form">' in page


def test_a_connect_with_no_server_left_reports_the_reason_to_the_page(number):
    number_connect_task.apply(args=[number.pk])
    event = Event.objects.get(number=number, type="number.state")
    assert event.payload["reason"].startswith("Could not connect: No Evolution API v2 server has room")
    number.refresh_from_db()
    assert number.state == "not_provisioned"


def test_logout_enqueues_the_task(admin_client, number, django_capture_on_commit_callbacks):
    number.state = WhatsAppNumber.State.CONNECTED
    number.save(update_fields=["state"])
    with broker_queue() as queue:
        with django_capture_on_commit_callbacks(execute=True):
            response = admin_client.post(reverse("crm:number-logout", args=[number.pk]))
        queued = _queued_task_names(queue)
    assert response.status_code == 302
    assert queued == ["messaging.tasks.numbers.number_logout_task"]


def test_connect_and_logout_accept_only_posts(admin_client, number):
    assert admin_client.get(reverse("crm:number-connect", args=[number.pk])).status_code == 405
    assert admin_client.get(reverse("crm:number-logout", args=[number.pk])).status_code == 405


# --- delete -------------------------------------------------------------------------------------------
def test_delete_asks_first_and_says_chats_and_history_go_too(admin_client, number):
    ChatFactory.create_batch(3, organization=number.organization, number=number)
    page = admin_client.get(reverse("crm:number-delete", args=[number.pk])).content.decode()
    assert "3 chats and their whole message history" in page
    assert WhatsAppNumber.objects.filter(pk=number.pk).exists()


def test_delete_removes_the_number_its_chats_and_messages(admin_client, admin, number):
    chat = ChatFactory(organization=admin.organization, number=number)
    MessageFactory.create_batch(2, chat=chat)
    kept = ChatFactory(organization=admin.organization)
    response = admin_client.post(reverse("crm:number-delete", args=[number.pk]), follow=True)
    assert response.redirect_chain[-1][0] == reverse("crm:number-list")
    assert "deleted, with its chats and history" in response.content.decode()
    assert not WhatsAppNumber.objects.filter(pk=number.pk).exists()
    assert not Chat.objects.filter(number_id=number.pk).exists()
    assert not Message.objects.filter(number_id=number.pk).exists()
    assert Chat.objects.filter(pk=kept.pk).exists()
    assert admin_client.post(reverse("crm:number-delete", args=[number.pk])).status_code == 404


def test_an_admin_of_two_organizations_manages_the_current_ones_numbers(client):
    first = MembershipFactory(role=Membership.Role.ADMIN)
    second = MembershipFactory(user=first.user, role=Membership.Role.AGENT, organization=OrganizationFactory())
    number = WhatsAppNumberFactory(organization=first.organization)
    client.force_login(first.user)
    client.post(reverse("crm:organization-switch"), {"organization_id": second.organization_id})
    # An agent in the organization chosen now: admin rights elsewhere do not carry over.
    assert client.get(reverse("crm:number-list")).status_code == 403
    assert client.get(reverse("crm:number-detail", args=[number.pk])).status_code == 403
