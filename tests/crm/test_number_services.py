"""Adding, connecting, logging out and deleting numbers: plan limits, provider calls off the request."""

import threading

import pytest
from django.db import close_old_connections

from crm.models import Plan, WhatsAppNumber
from crm.services import NumberLimitReachedError, number_create, number_delete
from messaging.models import Event
from messaging.services.numbers import number_connect, number_logout
from providers.fakes.evolution import FakeEvolutionServer
from tests.factories import ChatFactory, OrganizationFactory, PlanFactory, ProviderServerFactory


@pytest.fixture
def fake_evolution():
    server = FakeEvolutionServer(api_key="global-api-key").start()
    yield server
    server.stop()


@pytest.mark.django_db
def test_a_new_number_gets_the_plans_default_provider_and_is_not_provisioned():
    organization = OrganizationFactory(plan=Plan.objects.get(code="free"))
    number = number_create(organization=organization, name=" Sales ")
    assert (number.name, number.provider, number.state) == ("Sales", "green_api", "not_provisioned")
    assert number.instance_name.startswith("conversa-")


@pytest.mark.django_db
def test_the_plans_number_limit_is_enforced():
    organization = OrganizationFactory(plan=PlanFactory(code="tiny", max_numbers=1))
    number_create(organization=organization, name="One")
    with pytest.raises(NumberLimitReachedError, match="allows 1 WhatsApp number;"):
        number_create(organization=organization, name="Two")
    assert WhatsAppNumber.objects.filter(organization=organization).count() == 1


@pytest.mark.django_db
def test_an_unknown_provider_is_refused():
    with pytest.raises(ValueError, match="Unknown provider"):
        number_create(organization=OrganizationFactory(), name="X", provider="carrier-pigeon")


@pytest.mark.django_db(transaction=True)
def test_the_number_limit_is_exact_under_concurrent_adds():
    organization = OrganizationFactory(plan=PlanFactory(code="three", max_numbers=3))
    refused = []

    def add(index: int) -> None:
        try:
            number_create(organization=organization, name=f"Number {index}")
        except NumberLimitReachedError:
            refused.append(index)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=add, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert WhatsAppNumber.objects.filter(organization=organization).count() == 3
    assert len(refused) == 5


@pytest.mark.django_db
def test_connect_provisions_on_first_need_and_publishes_the_qr(fake_evolution):
    ProviderServerFactory(base_url=fake_evolution.url)
    number = number_create(organization=OrganizationFactory(), name="Support", provider="evolution")
    connected = number_connect(number_id=number.pk)
    assert connected.state == "waiting_for_qr_scan"
    assert number.instance_name in fake_evolution.instances
    event = Event.objects.filter(number=number, type="number.qr").get()
    assert event.payload["has_image"] or event.payload["qr_code"]


@pytest.mark.django_db
def test_logout_records_the_logged_out_state(fake_evolution):
    ProviderServerFactory(base_url=fake_evolution.url)
    number = number_create(organization=OrganizationFactory(), name="Support", provider="evolution")
    number_connect(number_id=number.pk)
    assert number_logout(number_id=number.pk).state == "logged_out"
    assert Event.objects.filter(number=number, type="number.state").latest("sequence").payload["state"] == "logged_out"


@pytest.mark.django_db
def test_connect_and_logout_of_a_deleted_number_do_nothing():
    assert number_connect(number_id=999_999) is None
    assert number_logout(number_id=999_999) is None


@pytest.mark.django_db
def test_delete_removes_the_number_its_chats_and_its_provider_instance(
    fake_evolution, tasks_run_inline, django_capture_on_commit_callbacks
):
    ProviderServerFactory(base_url=fake_evolution.url)
    number = number_create(organization=OrganizationFactory(), name="Support", provider="evolution")
    number_connect(number_id=number.pk)
    number.refresh_from_db()
    ChatFactory(organization=number.organization, number=number)
    with django_capture_on_commit_callbacks(execute=True):
        number_delete(number=number)
    assert not WhatsAppNumber.objects.filter(pk=number.pk).exists()
    assert number.instance_name not in fake_evolution.instances


@pytest.fixture
def tasks_run_inline():
    from config.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


@pytest.mark.django_db
def test_a_failed_provider_call_is_reported_to_the_page_without_counting_as_news_from_the_number():
    from datetime import timedelta

    from django.utils import timezone

    from messaging.services.numbers import number_failure_report

    seen = timezone.now() - timedelta(days=3)
    number = number_create(organization=OrganizationFactory(), name="Support", provider="fake")
    WhatsAppNumber.objects.filter(pk=number.pk).update(state="disconnected", last_seen_at=seen)
    number_failure_report(number_id=number.pk, reason="Could not connect: timeout")
    number.refresh_from_db()
    # Silence detection and archiving read last_seen_at: a failure must not make it look alive.
    assert (number.state, number.last_seen_at) == ("disconnected", seen)
    event = Event.objects.get(number=number, type="number.state")
    assert (event.payload["state"], event.payload["reason"]) == ("disconnected", "Could not connect: timeout")
