"""The demo workspace `make run` creates: an organization, its two people, a number and some chats.

Under `make run` the demo number lives on the fake Evolution API server the launcher starts, and
is provisioned and connected through the real Evolution adapter, so the demo runs the same code
as a real installation. Without that server (tests, `manage.py demo_seed` alone) it uses the
built-in fake provider.
"""

import secrets
from dataclasses import dataclass
from datetime import timedelta

import requests
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from crm.models import Chat, Contact, ContactIdentity, Membership, Organization, Plan, ProviderServer, WhatsAppNumber
from crm.phones import phone_normalize, wa_id_parse
from crm.selectors import number_provider_target
from messaging.models import Message
from providers.registry import ProviderName, adapter_for

DEMO_ORGANIZATION_SLUG = "demo"
DEMO_ADMIN_USERNAME = "demo-admin"
DEMO_AGENT_USERNAME = "demo-agent"
DEMO_SERVER_NAME = "demo-fake-evolution"
DEMO_NUMBER_PHONE = "+15550100200"

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


@dataclass(frozen=True)
class FakeEvolution:
    """Where the launcher's fake Evolution API server listens this run, and the key it accepts."""

    url: str
    api_key: str


@transaction.atomic
def demo_workspace_ensure(*, evolution: FakeEvolution | None = None) -> DemoWorkspace:
    """Create the demo workspace unless it exists; never touch data that is already there.

    The only row updated on a re-run is the demo's own provider server: the fake Evolution server
    listens on a new port with a new key each run.
    """
    server = _demo_server_ensure(evolution) if evolution else None
    organization, created = Organization.objects.get_or_create(
        slug=DEMO_ORGANIZATION_SLUG, defaults={"name": "Demo Clinic", "plan": Plan.objects.get(code="pro")}
    )
    admin = _demo_user_ensure(DEMO_ADMIN_USERNAME, organization, Membership.Role.ADMIN, is_superuser=True)
    agent = _demo_user_ensure(DEMO_AGENT_USERNAME, organization, Membership.Role.AGENT, is_superuser=False)
    if created:
        _demo_conversations_create(organization, server)
    return DemoWorkspace(organization=organization, admin=admin, agent=agent)


def _demo_server_ensure(evolution: FakeEvolution) -> ProviderServer:
    server, _ = ProviderServer.objects.update_or_create(
        name=DEMO_SERVER_NAME,
        defaults={"provider": ProviderName.EVOLUTION, "base_url": evolution.url, "api_key": evolution.api_key},
    )
    return server


def demo_number_connect(*, evolution: FakeEvolution) -> WhatsAppNumber | None:
    """Provision the demo number on the fake Evolution server and scan its QR, as a person would.

    The fake keeps its instances in memory, so this runs on every `make run`. Return the number,
    or None when the demo number is not on the fake Evolution server.
    """
    number = (
        WhatsAppNumber.objects.select_related("server")
        .filter(organization__slug=DEMO_ORGANIZATION_SLUG, server__name=DEMO_SERVER_NAME)
        .first()
    )
    if number is None:
        return None
    adapter_for(number.provider).provision(number_provider_target(number))
    scan = requests.post(
        f"{evolution.url}/_fake/scan/{number.instance_name}", json={"phone": DEMO_NUMBER_PHONE}, timeout=10
    )
    scan.raise_for_status()
    number.state = WhatsAppNumber.State.CONNECTED
    number.phone = phone_normalize(DEMO_NUMBER_PHONE)
    number.last_seen_at = timezone.now()
    number.save(update_fields=["state", "phone", "last_seen_at"])
    return number


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


def _demo_conversations_create(organization: Organization, server: ProviderServer | None) -> None:
    number = WhatsAppNumber.objects.create(
        organization=organization,
        name="Reception",
        provider=ProviderName.EVOLUTION if server else ProviderName.FAKE,
        server=server,
        instance_name=f"demo-{secrets.token_hex(4)}",
        phone=DEMO_NUMBER_PHONE,
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
