"""The message admin: walled per organization, and its list stays cheap as the table grows."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from crm.admin_mixins import EstimatedCountPaginator
from messaging.models import Message
from tests.factories import ChatFactory, MembershipFactory, MessageFactory, UserFactory

pytestmark = pytest.mark.django_db


CHANGELIST = reverse("admin:messaging_message_changelist")


def changelist_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(CHANGELIST)
    assert response.status_code == 200
    return len(queries)


def test_message_list_query_count_does_not_grow_with_rows(superuser_client):
    # Each factory message has its own chat, contact, number and organization: an N+1 would show.
    MessageFactory.create_batch(5)
    with_five = changelist_queries(superuser_client)
    MessageFactory.create_batch(45)
    with_fifty = changelist_queries(superuser_client)
    assert with_fifty == with_five


def test_org_admin_lists_only_their_organizations_messages(org_admin_client, org_admin):
    chat = ChatFactory(organization=org_admin.organization)
    mine = MessageFactory.create_batch(2, chat=chat)
    MessageFactory(chat__organization__name="Alpha Clinic", text="their secret")

    response = org_admin_client.get(CHANGELIST)

    assert set(response.context["cl"].result_list) == set(mine)
    page = response.content.decode()
    assert "their secret" not in page
    assert "Alpha Clinic" not in page


def test_org_admin_cannot_open_another_organizations_message(org_admin_client):
    message = MessageFactory()
    response = org_admin_client.get(reverse("admin:messaging_message_change", args=[message.pk]))
    assert response.status_code == 302
    assert response.url == reverse("admin:index")


def test_org_admin_cannot_file_a_message_under_another_organizations_chat(org_admin_client, org_admin):
    foreign_chat = ChatFactory()
    response = org_admin_client.post(
        reverse("admin:messaging_message_add"),
        {
            "organization": org_admin.organization_id,
            "number": foreign_chat.number_id,
            "chat": foreign_chat.pk,
            "direction": Message.Direction.INBOUND,
            "type": Message.Type.TEXT,
            "status": Message.Status.RECEIVED,
            "text": "sneaky",
            "timestamp_0": "2024-05-01",
            "timestamp_1": "10:00:00",
            "attempts": "0",
            "max_attempts": "3",
        },
    )
    assert response.status_code == 200
    assert {"number", "chat"} <= set(response.context["adminform"].form.errors)
    assert not Message.objects.filter(text="sneaky").exists()


def test_org_admin_sent_by_offers_only_their_colleagues(org_admin_client, org_admin):
    colleague = MembershipFactory(organization=org_admin.organization).user
    UserFactory(username="stranger")
    response = org_admin_client.get(reverse("admin:messaging_message_add"))
    choices = set(response.context["adminform"].form.fields["sent_by"].queryset)
    assert choices == {org_admin.user, colleague}
    assert "stranger" not in response.content.decode()


@pytest.fixture
def analyzed_then_shrunk():
    """Five messages in the planner's statistics, three in the table: estimate and count differ."""
    messages = MessageFactory.create_batch(5)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE messaging_message")
    Message.objects.filter(pk__in=[messages[0].pk, messages[1].pk]).delete()


def test_unfiltered_big_message_list_is_counted_from_the_estimate(superuser_client, analyzed_then_shrunk, monkeypatch):
    monkeypatch.setattr(EstimatedCountPaginator, "estimate_threshold", 1)

    response = superuser_client.get(CHANGELIST)

    changelist = response.context["cl"]
    assert changelist.result_count == 5  # the estimate, not COUNT(*)
    assert changelist.full_result_count is None  # and no second, unfiltered COUNT(*) either
    assert len(changelist.result_list) == 3
    assert "5 messages" in response.content.decode()


def test_filtered_message_list_is_counted_exactly(superuser_client, analyzed_then_shrunk, monkeypatch):
    monkeypatch.setattr(EstimatedCountPaginator, "estimate_threshold", 1)
    response = superuser_client.get(CHANGELIST, {"status__exact": Message.Status.RECEIVED})
    assert response.context["cl"].result_count == 3


def test_message_list_below_the_threshold_is_counted_exactly(superuser_client, analyzed_then_shrunk):
    response = superuser_client.get(CHANGELIST)
    assert response.context["cl"].result_count == 3


def test_org_admins_walled_message_list_is_counted_exactly(org_admin_client, org_admin, monkeypatch):
    monkeypatch.setattr(EstimatedCountPaginator, "estimate_threshold", 1)
    MessageFactory.create_batch(4)
    MessageFactory(chat__organization=org_admin.organization)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE messaging_message")

    response = org_admin_client.get(CHANGELIST)

    assert response.context["cl"].result_count == 1


def test_chat_list_uses_the_estimate_too(superuser_client, monkeypatch):
    monkeypatch.setattr(EstimatedCountPaginator, "estimate_threshold", 1)
    chats = ChatFactory.create_batch(3)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE crm_chat")
    chats[0].delete()

    response = superuser_client.get(reverse("admin:crm_chat_changelist"))

    assert response.context["cl"].result_count == 3
    assert len(response.context["cl"].result_list) == 2


def test_agent_is_sent_to_the_admin_login(client):
    client.force_login(MembershipFactory(user__is_staff=False).user)
    response = client.get(CHANGELIST)
    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))


def test_superuser_lists_every_organizations_messages(superuser_client):
    messages = MessageFactory.create_batch(3)
    response = superuser_client.get(CHANGELIST)
    assert set(response.context["cl"].result_list) == set(messages)
