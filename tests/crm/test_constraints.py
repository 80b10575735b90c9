"""Every invariant of the CRM data model is kept by PostgreSQL itself, not only by Python code.

Each test writes straight through the ORM (no clean()), so it fails if its constraint is dropped.
"""

import pytest
from django.core.exceptions import ValidationError

from crm.models import Chat, ContactIdentity, Membership, Organization, Plan, ProviderServer, WhatsAppNumber
from crm.phones import IdentityKind
from tests.factories import (
    ChatFactory,
    ContactFactory,
    ContactIdentityFactory,
    MembershipFactory,
    OrganizationFactory,
    ProviderServerFactory,
    UserFactory,
    WhatsAppNumberFactory,
)
from tests.integrity import refused_by_database

pytestmark = pytest.mark.django_db


def test_fresh_install_has_the_three_plans_with_their_limits():
    plans = {plan.code: plan for plan in Plan.objects.all()}
    assert set(plans) == {"free", "pro", "agency"}
    assert (plans["free"].messages_per_day, plans["free"].default_provider) == (100, "green_api")
    assert (plans["pro"].messages_per_day, plans["pro"].default_provider) == (10_000, "evolution")
    assert (plans["agency"].messages_per_day, plans["agency"].default_provider) == (None, "evolution")


def test_plan_must_allow_at_least_one_number():
    with refused_by_database():
        Plan.objects.create(
            code="broken", name="Broken", max_numbers=0, api_requests_per_minute=1, default_provider="fake"
        )


def test_plan_in_use_cannot_be_deleted():
    organization = OrganizationFactory()
    with pytest.raises(Exception, match="protected"):
        organization.plan.delete()


def test_user_is_member_of_an_organization_once():
    membership = MembershipFactory()
    with refused_by_database():
        Membership.objects.create(organization=membership.organization, user=membership.user)


def test_user_may_belong_to_several_organizations():
    user = UserFactory()
    MembershipFactory(user=user, role=Membership.Role.ADMIN)
    MembershipFactory(user=user)
    assert user.memberships.count() == 2


def test_provider_server_needs_capacity_and_a_unique_url():
    server = ProviderServerFactory()
    with refused_by_database():
        ProviderServer.objects.create(name="again", base_url=server.base_url, api_key="k")
    with refused_by_database():
        ProviderServer.objects.create(name="empty", base_url="http://127.0.0.1:1", api_key="k", capacity=0)


def test_instance_name_is_unique():
    number = WhatsAppNumberFactory()
    with refused_by_database():
        WhatsAppNumberFactory(instance_name=number.instance_name)


@pytest.mark.parametrize("phone", ["5511912345678", "+0011", "not a phone", "+55 1191234567"])
def test_number_phone_must_be_e164(phone):
    with refused_by_database():
        WhatsAppNumberFactory(phone=phone)


def test_number_gets_its_own_webhook_secret():
    first, second = WhatsAppNumberFactory(), WhatsAppNumberFactory()
    assert len(first.webhook_secret) >= 32
    assert first.webhook_secret != second.webhook_secret
    with refused_by_database():
        WhatsAppNumber.objects.filter(pk=first.pk).update(webhook_secret="")


def test_number_on_a_server_of_another_provider_is_a_form_error():
    number = WhatsAppNumberFactory.build(provider="green_api", server=ProviderServerFactory(provider="evolution"))
    with pytest.raises(ValidationError, match="different provider"):
        number.clean()


def test_one_whatsapp_id_is_one_contact_per_organization():
    identity = ContactIdentityFactory()
    other_contact = ContactFactory(organization=identity.organization)
    with refused_by_database():
        ContactIdentity.objects.create(
            organization=identity.organization, contact=other_contact, kind=identity.kind, value=identity.value
        )


def test_same_whatsapp_id_may_be_a_contact_in_two_organizations():
    identity = ContactIdentityFactory()
    elsewhere = ContactFactory(phone=identity.value)
    ContactIdentity.objects.create(
        organization=elsewhere.organization, contact=elsewhere, kind=identity.kind, value=identity.value
    )
    assert ContactIdentity.objects.filter(value=identity.value).count() == 2


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (IdentityKind.PHONE, "5511912345678@s.whatsapp.net"),
        (IdentityKind.PHONE, "5511912345678"),
        (IdentityKind.LID, "5511912345678"),
        (IdentityKind.LID, "abc@lid"),
    ],
)
def test_identity_is_stored_only_in_canonical_form(kind, value):
    contact = ContactFactory()
    with refused_by_database():
        ContactIdentity.objects.create(organization=contact.organization, contact=contact, kind=kind, value=value)


def test_identity_cannot_point_at_another_organizations_contact():
    contact = ContactFactory()
    stranger = OrganizationFactory()
    with refused_by_database():
        ContactIdentity.objects.create(
            organization=stranger, contact=contact, kind=IdentityKind.PHONE, value="+5511911112222"
        )


def test_one_chat_per_number_and_contact():
    chat = ChatFactory()
    with refused_by_database():
        Chat.objects.create(organization=chat.organization, number=chat.number, contact=chat.contact)


def test_chat_cannot_use_another_organizations_number():
    foreign_number = WhatsAppNumberFactory()
    contact = ContactFactory()
    with refused_by_database():
        Chat.objects.create(organization=contact.organization, number=foreign_number, contact=contact)


def test_chat_cannot_use_another_organizations_contact():
    number = WhatsAppNumberFactory()
    foreign_contact = ContactFactory()
    with refused_by_database():
        Chat.objects.create(organization=number.organization, number=number, contact=foreign_contact)


def test_chat_cannot_be_assigned_to_a_member_of_another_organization():
    chat = ChatFactory()
    outsider = MembershipFactory()
    with refused_by_database():
        Chat.objects.filter(pk=chat.pk).update(assignee=outsider)


def test_chat_can_be_assigned_to_a_member_of_its_organization():
    chat = ChatFactory()
    member = MembershipFactory(organization=chat.organization)
    chat.assignee = member
    chat.save(update_fields=["assignee"])
    chat.refresh_from_db()
    assert chat.assignee == member


def test_removing_the_assignee_from_the_organization_unassigns_the_chat():
    chat = ChatFactory()
    member = MembershipFactory(organization=chat.organization)
    Chat.objects.filter(pk=chat.pk).update(assignee=member)
    member.delete()
    chat.refresh_from_db()
    assert chat.assignee is None


def test_cross_organization_chat_is_a_form_error_before_it_reaches_the_database():
    number = WhatsAppNumberFactory()
    chat = Chat(organization=number.organization, number=number, contact=ContactFactory())
    with pytest.raises(ValidationError) as error:
        chat.full_clean()
    assert "contact" in error.value.message_dict


def test_unread_count_cannot_go_negative():
    chat = ChatFactory()
    with refused_by_database():
        Chat.objects.filter(pk=chat.pk).update(unread_count=-1)


def test_organization_slug_is_unique():
    organization = OrganizationFactory()
    with refused_by_database():
        Organization.objects.create(name="Again", slug=organization.slug, plan=organization.plan)
