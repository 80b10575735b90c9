"""A key of organization B gets 404 on everything of organization A, on every endpoint."""

import pytest
from django.urls import reverse

from crm.models import Chat, Contact, WhatsAppNumber
from messaging.api.urls import urlpatterns
from messaging.events import event_append
from messaging.models import Message, WebhookDelivery, WebhookSubscription
from messaging.services.webhooks_out import webhook_subscription_create
from tests.factories import ChatFactory, ContactIdentityFactory, MembershipFactory, MessageFactory
from tests.messaging.api.conftest import assert_error_shape


@pytest.fixture
def objects_of_a(org_a):
    organization = org_a.organization
    chat = ChatFactory(organization=organization, unread_count=2)
    ContactIdentityFactory(contact=chat.contact)
    failed = MessageFactory(chat=chat, direction="out", status="failed", provider_message_id=None)
    queued = MessageFactory(chat=chat, direction="out", status="queued", provider_message_id=None)
    subscription = webhook_subscription_create(
        organization=organization, url="https://example.test/hook", events=["chat.assigned"]
    )
    event = event_append(organization_id=organization.pk, type="chat.assigned", chat_id=chat.pk, data={})
    delivery = WebhookDelivery.objects.create(
        organization=organization, subscription=subscription, event=event, event_type=event.type
    )
    member = MembershipFactory(organization=organization)
    return {
        "number": chat.number,
        "chat": chat,
        "contact": chat.contact,
        "failed": failed,
        "queued": queued,
        "subscription": subscription,
        "delivery": delivery,
        "member": member,
    }


def calls_on(objects) -> list[tuple[str, str, str, dict]]:
    """(url name, method, url, body) of every endpoint that names one of A's objects."""
    number, chat, contact = objects["number"].pk, objects["chat"].pk, objects["contact"].pk
    subscription, delivery = objects["subscription"].pk, objects["delivery"].pk
    failed, queued = objects["failed"].pk, objects["queued"].pk
    return [
        ("number-detail", "get", reverse("api:number-detail", args=[number]), {}),
        ("number-state", "get", reverse("api:number-state", args=[number]), {}),
        ("number-qr", "get", reverse("api:number-qr", args=[number]), {}),
        ("number-connect", "post", reverse("api:number-connect", args=[number]), {}),
        ("number-logout", "post", reverse("api:number-logout", args=[number]), {}),
        ("chat-detail", "get", reverse("api:chat-detail", args=[chat]), {}),
        ("chat-assign", "post", reverse("api:chat-assign", args=[chat]), {"assignee": objects["member"].pk}),
        ("chat-resolve", "post", reverse("api:chat-resolve", args=[chat]), {}),
        ("chat-reopen", "post", reverse("api:chat-reopen", args=[chat]), {}),
        ("chat-read", "post", reverse("api:chat-read", args=[chat]), {}),
        ("message-send", "get", reverse("api:message-send", args=[chat]), {}),
        ("message-send", "post", reverse("api:message-send", args=[chat]), {"text": "hi"}),
        ("message-detail", "get", reverse("api:message-detail", args=[failed]), {}),
        ("message-media", "get", reverse("api:message-media", args=[failed]), {}),
        ("message-retry", "post", reverse("api:message-retry", args=[failed]), {}),
        ("message-cancel", "post", reverse("api:message-cancel", args=[queued]), {}),
        ("contact-detail", "get", reverse("api:contact-detail", args=[contact]), {}),
        ("contact-detail", "patch", reverse("api:contact-detail", args=[contact]), {"name": "Taken over"}),
        ("webhook-detail", "get", reverse("api:webhook-detail", args=[subscription]), {}),
        ("webhook-detail", "patch", reverse("api:webhook-detail", args=[subscription]), {"url": "https://b.test/"}),
        ("delivery-list", "get", reverse("api:delivery-list", args=[subscription]), {}),
        ("delivery-detail", "get", reverse("api:delivery-detail", args=[delivery]), {}),
        ("delivery-replay", "post", reverse("api:delivery-replay", args=[delivery]), {}),
        ("webhook-detail", "delete", reverse("api:webhook-detail", args=[subscription]), {}),
        ("number-detail", "delete", reverse("api:number-detail", args=[number]), {}),
    ]


def snapshot(objects) -> dict:
    """What B must not be able to change of A's."""
    return {
        "chat": Chat.objects.values("status", "assignee", "unread_count").get(pk=objects["chat"].pk),
        "contact": Contact.objects.values("name", "phone").get(pk=objects["contact"].pk),
        "messages": list(Message.objects.order_by("id").values("id", "status")),
        "subscription": WebhookSubscription.objects.values("url", "is_active").get(pk=objects["subscription"].pk),
        "delivery": WebhookDelivery.objects.values("status", "attempts").get(pk=objects["delivery"].pk),
        "numbers": WhatsAppNumber.objects.count(),
    }


def test_every_endpoint_answers_404_to_another_organizations_key(org_a, org_b, objects_of_a):
    before = snapshot(objects_of_a)
    for _name, method, url, body in calls_on(objects_of_a):
        response = getattr(org_b.client, method)(url, body, format="json")
        assert_error_shape(response, 404, "not_found")
    assert snapshot(objects_of_a) == before


def test_the_same_calls_reach_the_objects_with_their_own_key(org_a, objects_of_a):
    """The other half of the wall: the URLs above are real, so their 404s for B mean something."""
    for name, method, url, body in calls_on(objects_of_a):
        response = getattr(org_a.client, method)(url, body, format="json")
        # The QR is not cached and the failed message has no media: those two are 404 by content.
        if name in {"number-qr", "message-media"}:
            assert response.json()["error"]["code"] in {"qr_expired", "not_found"}
            continue
        assert response.status_code < 400, (name, method, response.content)


def test_the_tenancy_table_covers_every_endpoint_with_an_id(objects_of_a):
    with_ids = {pattern.name for pattern in urlpatterns if "<int:" in str(pattern.pattern)}
    assert with_ids == {name for name, *_ in calls_on(objects_of_a)}


def test_lists_show_only_the_callers_organization(org_a, org_b, objects_of_a):
    for url in ("/api/v1/numbers/", "/api/v1/chats/", "/api/v1/contacts/", "/api/v1/webhooks/"):
        assert org_b.client.get(url).json()["results"] == [], url
        assert org_a.client.get(url).json()["results"] != [], url


def test_assigning_to_a_member_of_another_organization_is_refused(org_a, org_b, objects_of_a):
    stranger = MembershipFactory(organization=org_b.organization)
    response = org_a.client.post(
        reverse("api:chat-assign", args=[objects_of_a["chat"].pk]), {"assignee": stranger.pk}, format="json"
    )
    error = assert_error_shape(response, 400, "invalid")
    assert "assignee" in error["details"]["fields"]
    assert Chat.objects.get(pk=objects_of_a["chat"].pk).assignee_id is None


def test_a_chat_filter_on_another_organizations_number_finds_nothing(org_a, org_b, objects_of_a):
    response = org_b.client.get("/api/v1/chats/", {"number": objects_of_a["number"].pk})
    assert response.json()["results"] == []
