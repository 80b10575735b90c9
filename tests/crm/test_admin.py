"""The admin: every registered model opens, agents are kept out, organization admins are walled in."""

import pytest
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask, SolarSchedule

from crm.models import (
    ApiKey,
    Chat,
    Contact,
    ContactIdentity,
    HealthCheck,
    Membership,
    Organization,
    Plan,
    ProviderServer,
    QuickReply,
    WhatsAppNumber,
)
from crm.services import api_key_create
from messaging.demo import DEMO_ADMIN_USERNAME, DEMO_AGENT_USERNAME, demo_workspace_ensure
from messaging.events import event_append
from messaging.models import WebhookDelivery, WebhookSubscription
from messaging.services.webhooks_out import webhook_subscription_create
from tests.factories import (
    ChatFactory,
    ContactFactory,
    ContactIdentityFactory,
    MembershipFactory,
    OrganizationFactory,
    ProviderServerFactory,
    WhatsAppNumberFactory,
)

pytestmark = pytest.mark.django_db


REGISTERED_MODELS = list(admin.site._registry)
PAGES = ["changelist", "add", "change"]


def _interval_create() -> IntervalSchedule:
    return IntervalSchedule.objects.create(every=5, period=IntervalSchedule.MINUTES)


# How to make a row of a model the demo workspace has none of. A newly registered model without
# rows fails test_superuser_opens_every_admin_page until it gets an entry here.
ROW_MAKERS = {
    Group: lambda: Group.objects.create(name="Support"),
    ProviderServer: ProviderServerFactory,
    IntervalSchedule: _interval_create,
    CrontabSchedule: lambda: CrontabSchedule.objects.create(minute="0", hour="3"),
    SolarSchedule: lambda: SolarSchedule.objects.create(event="sunrise", latitude="-23.55", longitude="-46.63"),
    ClockedSchedule: lambda: ClockedSchedule.objects.create(clocked_time=timezone.now()),
    PeriodicTask: lambda: PeriodicTask.objects.create(name="Nightly", task="noop", interval=_interval_create()),
    HealthCheck: lambda: HealthCheck.objects.create(
        provider="evolution", server=ProviderServerFactory(), is_healthy=True, latency_ms=3, checked_at=timezone.now()
    ),
    QuickReply: lambda: QuickReply.objects.create(
        organization=Organization.objects.first(), shortcut="hours", text="We open at 9."
    ),
    ApiKey: lambda: api_key_create(organization=Organization.objects.first(), name="Zapier")[0],
    WebhookSubscription: lambda: _webhook_delivery_create().subscription,
    WebhookDelivery: lambda: _webhook_delivery_create(),
}
# Admin pages that exist for no one, by design: deliveries come from events, health checks from the
# beats, never by hand.
PAGES_REFUSED = {(WebhookDelivery, "add"), (HealthCheck, "add")}


def _webhook_delivery_create() -> WebhookDelivery:
    chat = Chat.objects.first()
    subscription = webhook_subscription_create(
        organization=chat.organization, url="https://example.test/", events=["chat.assigned"]
    )
    event = event_append(organization_id=chat.organization_id, type="chat.assigned", chat_id=chat.pk, data={})
    return WebhookDelivery.objects.create(
        organization=chat.organization, subscription=subscription, event=event, event_type=event.type
    )


def admin_url(model, page: str, obj=None) -> str:
    name = f"admin:{model._meta.app_label}_{model._meta.model_name}_{page}"
    return reverse(name, args=[quote(obj.pk)] if obj is not None else [])


def page_url(model, page: str) -> str:
    """Return the admin URL of `page`, making a row first for a change page when there is none."""
    if page != "change":
        return admin_url(model, page)
    row = model._default_manager.order_by("pk").first()
    if row is None:
        assert model in ROW_MAKERS, f"Add a way to make a {model._meta.label} row to ROW_MAKERS"
        row = ROW_MAKERS[model]()
    return admin_url(model, "change", row)


@pytest.fixture
def demo():
    return demo_workspace_ensure()


@pytest.fixture
def superuser_client(client, demo):
    """The demo's own superuser (overrides the plain one in conftest: these tests need demo data)."""
    client.force_login(get_user_model().objects.get(username=DEMO_ADMIN_USERNAME))
    return client


def organization_rows_create(organization: Organization) -> Chat:
    """Give `organization` a chat, with its number, contact and the contact's identity."""
    chat = ChatFactory(organization=organization)
    ContactIdentityFactory(contact=chat.contact)
    return chat


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("model", REGISTERED_MODELS, ids=lambda model: model._meta.label)
def test_superuser_opens_every_admin_page(superuser_client, model, page):
    response = superuser_client.get(page_url(model, page))
    assert response.status_code == (403 if (model, page) in PAGES_REFUSED else 200)


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("model", REGISTERED_MODELS, ids=lambda model: model._meta.label)
def test_agent_is_sent_to_the_admin_login(client, demo, model, page):
    client.force_login(get_user_model().objects.get(username=DEMO_AGENT_USERNAME))
    url = page_url(model, page)
    response = client.get(url)
    assert response.status_code == 302
    assert response.url == f"{reverse('admin:login')}?next={url}"


def test_staff_user_without_an_admin_membership_is_sent_to_the_login(client):
    membership = MembershipFactory(role=Membership.Role.AGENT, user__is_staff=True)
    client.force_login(membership.user)
    response = client.get(admin_url(Chat, "changelist"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))


@pytest.mark.parametrize("model", [Chat, Contact, ContactIdentity, WhatsAppNumber, Membership, Organization])
def test_org_admin_lists_only_their_organizations_rows(org_admin_client, org_admin, model):
    organization_rows_create(org_admin.organization)
    other = organization_rows_create(OrganizationFactory(name="Alpha Clinic"))
    MembershipFactory(organization=other.organization, role=Membership.Role.ADMIN)

    response = org_admin_client.get(admin_url(model, "changelist"))

    assert response.status_code == 200
    listed = set(response.context["cl"].result_list)
    if model is Organization:
        expected = {org_admin.organization}
    else:
        expected = set(model.objects.filter(organization=org_admin.organization))
    assert expected
    assert listed == expected
    assert "Alpha Clinic" not in response.content.decode()  # not even in the organization filter


@pytest.mark.parametrize("model", [Chat, Contact, ContactIdentity, WhatsAppNumber, Membership, Organization])
def test_org_admin_cannot_open_another_organizations_row(org_admin_client, model):
    chat = organization_rows_create(MembershipFactory().organization)
    row = chat.organization if model is Organization else model.objects.filter(organization=chat.organization).first()

    response = org_admin_client.get(admin_url(model, "change", row))

    assert response.status_code == 302
    assert response.url == reverse("admin:index")


def test_org_admin_opens_their_own_chat(org_admin_client, org_admin):
    chat = organization_rows_create(org_admin.organization)
    response = org_admin_client.get(admin_url(Chat, "change", chat))
    assert response.status_code == 200
    assert response.context["original"] == chat


@pytest.mark.parametrize("model", [Plan, ProviderServer, get_user_model(), Group, PeriodicTask])
@pytest.mark.parametrize("page", ["changelist", "add"])
def test_org_admin_is_refused_global_tables(org_admin_client, model, page):
    response = org_admin_client.get(admin_url(model, page))
    assert response.status_code == 403


def test_org_admin_index_shows_only_their_tables(org_admin_client):
    response = org_admin_client.get(reverse("admin:index"))
    listed = {entry["object_name"] for app in response.context["app_list"] for entry in app["models"]}
    assert listed == {
        "Organization",
        "Membership",
        "WhatsAppNumber",
        "Contact",
        "ContactIdentity",
        "Chat",
        "Message",
        "HealthCheck",  # their own numbers' checks only (walled by organization)
        "QuickReply",
        "ApiKey",
        "WebhookSubscription",
        "WebhookDelivery",
    }


def test_org_admin_cannot_add_or_delete_an_organization(org_admin_client, org_admin):
    assert org_admin_client.get(admin_url(Organization, "add")).status_code == 403
    response = org_admin_client.post(admin_url(Organization, "delete", org_admin.organization), {"post": "yes"})
    assert response.status_code == 403
    assert Organization.objects.filter(pk=org_admin.organization_id).exists()


def test_org_admin_renames_their_organization_but_keeps_its_plan(org_admin_client, org_admin):
    organization = org_admin.organization
    other_plan = Plan.objects.exclude(pk=organization.plan_id).first()
    response = org_admin_client.post(
        admin_url(Organization, "change", organization),
        {
            "name": "Beta Bakery & Cafe",
            "plan": other_plan.pk,
            "memberships-TOTAL_FORMS": "1",
            "memberships-INITIAL_FORMS": "1",
            "memberships-0-id": org_admin.pk,
            "memberships-0-organization": organization.pk,
            "memberships-0-user": org_admin.user_id,
            "memberships-0-role": "admin",
        },
    )
    assert response.status_code == 302
    organization.refresh_from_db()
    assert organization.name == "Beta Bakery & Cafe"
    assert organization.plan_id != other_plan.pk


def chat_form(chat_organization, number, contact) -> dict:
    return {
        "organization": chat_organization.pk,
        "number": number.pk,
        "contact": contact.pk,
        "status": Chat.Status.OPEN,
        "unread_count": "0",
    }


def test_org_admin_adds_a_chat_in_their_organization(org_admin_client, org_admin):
    organization = org_admin.organization
    number = WhatsAppNumberFactory(organization=organization)
    contact = ContactFactory(organization=organization)

    response = org_admin_client.post(admin_url(Chat, "add"), chat_form(organization, number, contact))

    assert response.status_code == 302
    assert Chat.objects.filter(organization=organization, number=number, contact=contact).exists()


def test_org_admin_linking_another_organizations_contact_is_a_form_error(org_admin_client, org_admin):
    organization = org_admin.organization
    number = WhatsAppNumberFactory(organization=organization)
    foreign_contact = ContactFactory()

    response = org_admin_client.post(admin_url(Chat, "add"), chat_form(organization, number, foreign_contact))

    assert response.status_code == 200
    assert "contact" in response.context["adminform"].form.errors
    assert not Chat.objects.exists()


def test_org_admin_cannot_put_a_chat_in_another_organization(org_admin_client):
    foreign = MembershipFactory().organization
    number = WhatsAppNumberFactory(organization=foreign)
    contact = ContactFactory(organization=foreign)

    response = org_admin_client.post(admin_url(Chat, "add"), chat_form(foreign, number, contact))

    assert response.status_code == 200
    assert set(response.context["adminform"].form.errors) == {"organization", "number", "contact"}
    assert not Chat.objects.exists()


def test_org_admin_chooses_only_their_organizations_in_forms(org_admin_client, org_admin):
    ContactFactory(organization__name="Alpha Clinic")
    response = org_admin_client.get(admin_url(Chat, "add"))
    form = response.context["adminform"].form
    assert list(form.fields["organization"].queryset) == [org_admin.organization]
    assert list(form.fields["contact"].queryset) == []
    assert "Alpha Clinic" not in response.content.decode()


def test_org_admin_autocomplete_offers_only_their_contacts(org_admin_client, org_admin):
    mine = ContactFactory(organization=org_admin.organization, name="Carla Mine")
    ContactFactory(name="Carla Theirs")
    response = org_admin_client.get(
        reverse("admin:autocomplete"),
        {"app_label": "crm", "model_name": "chat", "field_name": "contact", "term": "Carla"},
    )
    assert response.status_code == 200
    assert response.json()["results"] == [{"id": str(mine.pk), "text": "Carla Mine"}]


def test_superuser_linking_another_organizations_contact_is_a_form_error(superuser_client, demo):
    number = demo.organization.numbers.get()
    foreign_contact = ContactFactory()
    chats_before = Chat.objects.count()

    response = superuser_client.post(admin_url(Chat, "add"), chat_form(demo.organization, number, foreign_contact))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["contact"] == ["This contact belongs to another organization."]
    assert Chat.objects.count() == chats_before


def test_a_contact_keeps_its_organization_when_its_form_names_another(superuser_client, demo):
    contact = Contact.objects.filter(organization=demo.organization).first()
    identity = contact.identities.get()
    other = OrganizationFactory()

    response = superuser_client.post(
        admin_url(Contact, "change", contact),
        {
            "organization": other.pk,
            "name": "Maria S.",
            "phone": contact.phone,
            "identities-TOTAL_FORMS": "1",
            "identities-INITIAL_FORMS": "1",
            "identities-0-id": identity.pk,
            "identities-0-contact": contact.pk,
            "identities-0-kind": identity.kind,
            "identities-0-value": identity.value,
        },
    )

    assert response.status_code == 302
    contact.refresh_from_db()
    assert (contact.name, contact.organization) == ("Maria S.", demo.organization)


def test_a_chat_keeps_its_number_when_its_form_names_another(superuser_client, demo):
    chat = Chat.objects.filter(organization=demo.organization).first()
    number = chat.number
    other_number = WhatsAppNumberFactory(organization=demo.organization)
    form = chat_form(demo.organization, other_number, chat.contact) | {"status": Chat.Status.PENDING}

    response = superuser_client.post(admin_url(Chat, "change", chat), form)

    assert response.status_code == 302
    chat.refresh_from_db()
    assert (chat.status, chat.number) == (Chat.Status.PENDING, number)


def contact_form(organization, identity_value: str) -> dict:
    return {
        "organization": organization.pk,
        "name": "Paula",
        "phone": identity_value,
        "identities-TOTAL_FORMS": "1",
        "identities-INITIAL_FORMS": "0",
        "identities-0-kind": "phone",
        "identities-0-value": identity_value,
    }


def test_new_contacts_identity_takes_the_contacts_organization(superuser_client, demo):
    response = superuser_client.post(admin_url(Contact, "add"), contact_form(demo.organization, "+5511955554444"))
    assert response.status_code == 302
    identity = ContactIdentity.objects.get(value="+5511955554444")
    assert identity.organization == demo.organization
    assert identity.contact.organization == demo.organization


def test_duplicate_identity_in_the_contact_form_is_a_form_error(superuser_client, demo):
    existing = ContactIdentity.objects.filter(organization=demo.organization).first()
    contacts_before = Contact.objects.count()

    response = superuser_client.post(admin_url(Contact, "add"), contact_form(demo.organization, existing.value))

    assert response.status_code == 200
    assert "already exists" in str(response.context["inline_admin_formsets"][0].formset.errors)
    assert Contact.objects.count() == contacts_before


def test_identity_of_another_organizations_contact_is_a_form_error(superuser_client, demo):
    foreign_contact = ContactFactory()
    response = superuser_client.post(
        admin_url(ContactIdentity, "add"),
        {
            "organization": demo.organization.pk,
            "contact": foreign_contact.pk,
            "kind": "phone",
            "value": "+5511933332222",
        },
    )
    assert response.status_code == 200
    assert "contact" in response.context["adminform"].form.errors
    assert not ContactIdentity.objects.filter(value="+5511933332222").exists()


def test_secrets_are_not_shown_in_list_pages(superuser_client, demo):
    ProviderServerFactory(api_key="server-key-do-not-show")
    WhatsAppNumberFactory(organization=demo.organization, credentials={"token": "number-token-do-not-show"})
    secret = WhatsAppNumber.objects.filter(organization=demo.organization).first().webhook_secret

    servers = superuser_client.get(admin_url(ProviderServer, "changelist")).content.decode()
    numbers = superuser_client.get(admin_url(WhatsAppNumber, "changelist")).content.decode()

    assert "evolution-" in servers  # the server is listed, its key is not
    assert "server-key-do-not-show" not in servers
    assert "number-token-do-not-show" not in numbers
    assert secret not in numbers


def chat_action(client, action: str, chats) -> None:
    response = client.post(
        admin_url(Chat, "changelist"),
        {"action": action, admin.helpers.ACTION_CHECKBOX_NAME: [chat.pk for chat in chats]},
    )
    assert response.status_code == 302


def test_resolve_action_resolves_exactly_the_selected_chats(superuser_client, demo):
    first, second, third = Chat.objects.filter(organization=demo.organization).order_by("pk")

    chat_action(superuser_client, "chats_resolve", [first, third])

    statuses = dict(Chat.objects.filter(organization=demo.organization).values_list("pk", "status"))
    assert statuses == {first.pk: "resolved", second.pk: "open", third.pk: "resolved"}


def test_reopen_action_reopens_exactly_the_selected_chats(superuser_client, demo):
    Chat.objects.filter(organization=demo.organization).update(status=Chat.Status.RESOLVED)
    first, second, third = Chat.objects.filter(organization=demo.organization).order_by("pk")

    chat_action(superuser_client, "chats_reopen", [second])

    statuses = dict(Chat.objects.filter(organization=demo.organization).values_list("pk", "status"))
    assert statuses == {first.pk: "resolved", second.pk: "open", third.pk: "resolved"}


def test_org_admin_action_leaves_other_organizations_chats_alone(org_admin_client, org_admin):
    mine = organization_rows_create(org_admin.organization)
    theirs = organization_rows_create(MembershipFactory().organization)

    chat_action(org_admin_client, "chats_resolve", [mine, theirs])

    assert Chat.objects.get(pk=mine.pk).status == Chat.Status.RESOLVED
    assert Chat.objects.get(pk=theirs.pk).status == Chat.Status.OPEN


def test_admin_of_a_deactivated_organization_loses_the_admin(org_admin_client, org_admin):
    assert org_admin_client.get(reverse("admin:index")).status_code == 200
    org_admin.organization.is_active = False
    org_admin.organization.save(update_fields=["is_active"])
    response = org_admin_client.get(reverse("admin:crm_chat_changelist"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))
