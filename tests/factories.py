"""factory_boy factories for every model; related rows default to the same organization."""

import factory
from django.contrib.auth import get_user_model

from crm.models import Chat, Contact, ContactIdentity, Membership, Organization, Plan, ProviderServer, WhatsAppNumber
from crm.phones import IdentityKind
from messaging.models import Message
from providers.registry import ProviderName

PASSWORD = "correct horse battery staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.test")
    password = factory.django.Password(PASSWORD)


class PlanFactory(factory.django.DjangoModelFactory):
    """The seeded Pro plan (recreated with its seeded limits where a transactional test flushed it)."""

    class Meta:
        model = Plan
        django_get_or_create = ("code",)

    code = "pro"
    name = "Pro"
    max_numbers = 5
    messages_per_day = 10_000
    api_requests_per_minute = 600
    default_provider = ProviderName.EVOLUTION


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Organization {n}")
    slug = factory.Sequence(lambda n: f"organization-{n}")
    plan = factory.SubFactory(PlanFactory)


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    organization = factory.SubFactory(OrganizationFactory)
    user = factory.SubFactory(UserFactory)
    role = Membership.Role.AGENT


class ProviderServerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ProviderServer

    provider = ProviderName.EVOLUTION
    name = factory.Sequence(lambda n: f"evolution-{n}")
    base_url = factory.Sequence(lambda n: f"http://127.0.0.1:{20000 + n}")
    api_key = "global-api-key"


class WhatsAppNumberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = WhatsAppNumber

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Number {n}")
    provider = ProviderName.FAKE
    instance_name = factory.Sequence(lambda n: f"instance-{n}")
    phone = factory.Sequence(lambda n: f"+1555010{n:04d}")


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contact

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Contact {n}")
    phone = factory.Sequence(lambda n: f"+5511900{n:06d}")


class ContactIdentityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ContactIdentity

    contact = factory.SubFactory(ContactFactory)
    organization = factory.SelfAttribute("contact.organization")
    kind = IdentityKind.PHONE
    value = factory.SelfAttribute("contact.phone")


class ChatFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Chat

    organization = factory.SubFactory(OrganizationFactory)
    number = factory.SubFactory(WhatsAppNumberFactory, organization=factory.SelfAttribute("..organization"))
    contact = factory.SubFactory(ContactFactory, organization=factory.SelfAttribute("..organization"))


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    chat = factory.SubFactory(ChatFactory)
    organization = factory.SelfAttribute("chat.organization")
    number = factory.SelfAttribute("chat.number")
    direction = Message.Direction.INBOUND
    status = Message.Status.RECEIVED
    text = factory.Sequence(lambda n: f"Message {n}")
    provider_message_id = factory.Sequence(lambda n: f"wamid.{n}")
