"""The demo workspace `make run` creates: an organization, its two people, a number and some chats."""

import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from crm.models import Chat, Contact, ContactIdentity, Membership, Organization, Plan, WhatsAppNumber
from crm.phones import wa_id_parse
from messaging.models import Message
from providers.registry import ProviderName

DEMO_ORGANIZATION_SLUG = "demo"
DEMO_ADMIN_USERNAME = "demo-admin"
DEMO_AGENT_USERNAME = "demo-agent"

# (contact name, WhatsApp id as a provider sends it, [(direction, text, minutes ago)])
DEMO_CONVERSATIONS = [
    (
        "Maria Souza",
        "5511912345678@s.whatsapp.net",
        [("in", "Oi! Vocês abrem no sábado?", 55), ("out", "Abrimos sim, das 9h às 13h.", 52), ("in", "Obrigada!", 50)],
    ),
    (
        "John Carter",
        "14155550123@c.us",
        [("in", "Hi, I'd like to move my appointment to Friday.", 30), ("out", "Sure, 10:30 works?", 25)],
    ),
    ("Ana Lima", "5521987654321", [("in", "Can you send me the price list?", 5)]),
]


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str | None  # None when the user already existed: its password is not ours to show


@dataclass(frozen=True)
class DemoWorkspace:
    organization: Organization
    admin: DemoLogin
    agent: DemoLogin


@transaction.atomic
def demo_workspace_ensure() -> DemoWorkspace:
    """Create the demo workspace unless it exists; never touch data that is already there."""
    organization, created = Organization.objects.get_or_create(
        slug=DEMO_ORGANIZATION_SLUG, defaults={"name": "Demo Clinic", "plan": Plan.objects.get(code="pro")}
    )
    admin = _demo_user_ensure(DEMO_ADMIN_USERNAME, organization, Membership.Role.ADMIN, is_superuser=True)
    agent = _demo_user_ensure(DEMO_AGENT_USERNAME, organization, Membership.Role.AGENT, is_superuser=False)
    if created:
        _demo_conversations_create(organization)
    return DemoWorkspace(organization=organization, admin=admin, agent=agent)


def _demo_user_ensure(username: str, organization: Organization, role: str, *, is_superuser: bool) -> DemoLogin:
    user_model = get_user_model()
    user = user_model.objects.filter(username=username).first()
    password = None
    if user is None:
        password = secrets.token_urlsafe(12)
        user = user_model.objects.create_user(
            username=username, password=password, is_staff=is_superuser, is_superuser=is_superuser
        )
    Membership.objects.get_or_create(organization=organization, user=user, defaults={"role": role})
    return DemoLogin(username=username, password=password)


def _demo_conversations_create(organization: Organization) -> None:
    number = WhatsAppNumber.objects.create(
        organization=organization,
        name="Reception",
        provider=ProviderName.FAKE,
        instance_name=f"demo-{secrets.token_hex(4)}",
        phone="+15550100200",
        state=WhatsAppNumber.State.CONNECTED,
        last_seen_at=timezone.now(),
    )
    now = timezone.now()
    for name, wa_id, lines in DEMO_CONVERSATIONS:
        identity = wa_id_parse(wa_id)
        contact = Contact.objects.create(organization=organization, name=name, phone=identity.value)
        ContactIdentity.objects.create(
            organization=organization, contact=contact, kind=identity.kind, value=identity.value
        )
        chat = Chat.objects.create(organization=organization, number=number, contact=contact)
        for position, (direction, text, minutes_ago) in enumerate(lines):
            Message.objects.create(
                organization=organization,
                number=number,
                chat=chat,
                direction=direction,
                text=text,
                timestamp=now - timedelta(minutes=minutes_ago),
                status=Message.Status.RECEIVED if direction == "in" else Message.Status.READ,
                provider_message_id=f"demo-{chat.pk}-{position}",
            )
        last_direction, last_text, last_minutes_ago = lines[-1]
        chat.last_message_at = now - timedelta(minutes=last_minutes_ago)
        chat.last_message_preview = last_text[:200]
        chat.unread_count = 1 if last_direction == "in" else 0
        chat.save(update_fields=["last_message_at", "last_message_preview", "unread_count"])
