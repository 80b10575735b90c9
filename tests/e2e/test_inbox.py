"""The inbox in a real browser: a provider webhook shows up live, the agent replies, the fake
provider's statuses turn the delivery mark, and a message sent while the socket was down arrives
after the reconnect (catch-up by cursor)."""

import re
import time

import pytest
from playwright.sync_api import expect

from crm.models import QuickReply, WhatsAppNumber
from crm.services import number_provision
from messaging.models import Message
from providers.fakes.evolution import FakeEvolutionServer
from tests.e2e.conftest import login, screenshot
from tests.factories import ContactIdentityFactory, MembershipFactory, ProviderServerFactory, WhatsAppNumberFactory

API_KEY = "e2e-evolution-key"
SENDER = "5511912345678"


def _wait_for(condition, *, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def evolution():
    server = FakeEvolutionServer(api_key=API_KEY, webhook_delay_seconds=0.02, status_delay_seconds=0.4).start()
    yield server
    server.stop()


@pytest.fixture
def connected_number(live_app, evolution, settings):
    """A number of the agent's organization on the fake Evolution server, whose webhooks reach the live app."""
    settings.PUBLIC_BASE_URL = live_app.url
    agent = MembershipFactory(organization__name="Acme Dental", user__username="ana")
    ProviderServerFactory(base_url=evolution.url, api_key=API_KEY)
    number = WhatsAppNumberFactory(organization=agent.organization, provider="evolution", name="Reception", phone="")
    number = number_provision(number_id=number.pk)
    evolution.scan(number.instance_name, phone="15550100200")
    _wait_for(
        lambda: WhatsAppNumber.objects.filter(pk=number.pk, state=WhatsAppNumber.State.CONNECTED).exists(),
        what="the number to connect through the live app's webhook",
    )
    return agent, number


def test_agent_sees_webhooks_live_replies_and_catches_up_after_a_cut(live_app, page, evolution, connected_number):
    agent, number = connected_number
    login(page, live_app, agent.user.username)
    page.click("[data-testid=nav-inbox]")
    expect(page.locator("#chat-list")).to_contain_text("No chats here.")
    expect(page.locator("#inbox")).to_have_attribute("data-live", "true")

    # A provider webhook arrives: the new chat appears in the list without a reload.
    page.evaluate("window.__sameDocument = true")
    evolution.inbound(number.instance_name, sender=SENDER, text="Oi, preciso remarcar", push_name="Maria Souza")
    row = page.locator(".chat-row", has_text="Maria Souza")
    expect(row).to_contain_text("Oi, preciso remarcar")
    expect(row.locator("[data-testid=unread]")).to_have_text("1")
    assert page.evaluate("window.__sameDocument") is True
    screenshot(page, "inbox")

    # Open it (read), then the next message lands in the open conversation live.
    row.click()
    expect(page.locator("[data-testid=chat-title]")).to_have_text("Maria Souza")
    expect(page.locator(".chat-row.current [data-testid=unread]")).to_have_count(0)
    expect(page.locator("#inbox")).to_have_attribute("data-live", "true")
    page.evaluate("window.__sameDocument = true")
    evolution.inbound(number.instance_name, sender=SENDER, text="Pode ser sexta? https://example.com/agenda")
    history = page.locator("#history")
    expect(history).to_contain_text("Pode ser sexta?")
    link = history.locator("a[href='https://example.com/agenda']")
    expect(link).to_have_attribute("rel", "noopener noreferrer nofollow")
    expect(page.locator(".chat-row.current .preview")).to_contain_text("Pode ser sexta?")
    # It arrived in the open chat: the page marks it read, and the list's badge goes.
    expect(page.locator(".chat-row.current [data-testid=unread]")).to_have_count(0)
    assert page.evaluate("window.__sameDocument") is True

    # The agent replies with Enter; the fake provider's delivered and read statuses turn the mark.
    page.fill("#composer-text", "Claro! Sexta às 10h30 funciona?")
    page.press("#composer-text", "Enter")
    reply = page.locator(".message.out", has_text="Sexta às 10h30")
    expect(reply).to_have_count(1)
    expect(reply.locator("[data-testid=mark]")).to_have_attribute("data-status", "read", timeout=20_000)
    assert Message.objects.filter(text="Claro! Sexta às 10h30 funciona?").count() == 1
    expect(page.locator("#composer-text")).to_have_value("")

    # The socket is cut; a message arrives meanwhile; after the reconnect it is there.
    page.context.set_offline(True)
    page.evaluate("window.conversaInbox.socket.close()")
    expect(page.locator("[data-testid=connection]")).to_be_visible()
    evolution.inbound(number.instance_name, sender=SENDER, text="Perfeito, obrigada!")
    _wait_for(lambda: Message.objects.filter(text="Perfeito, obrigada!").exists(), what="the webhook to be stored")
    page.wait_for_timeout(300)
    expect(page.locator("#inbox")).to_have_attribute("data-live", "false")  # still cut off
    expect(history).not_to_contain_text("Perfeito, obrigada!")
    page.context.set_offline(False)
    expect(history).to_contain_text("Perfeito, obrigada!")
    expect(page.locator("[data-testid=connection]")).to_be_hidden()
    assert page.evaluate("window.__sameDocument") is True
    screenshot(page, "chat")


PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201e2273ad30000000049454e44ae426082"
)


def test_composer_quick_replies_attachments_history_and_failures(live_app, page):
    from tests.crm.inbox_fixtures import bulk_chats, chat_with_message

    agent = MembershipFactory(organization__name="Acme Dental", user__username="bruno")
    organization = agent.organization
    number = WhatsAppNumberFactory(organization=organization, name="Reception", state="connected")
    [chat] = bulk_chats(organization=organization, number=number, count=1, messages_per_chat=120)
    unreachable = chat_with_message(
        organization=organization,
        number=number,
        text="Hello?",
        contact__name="Nobody Home",
        contact__phone="+15550000000",
    )
    QuickReply.objects.create(organization=organization, shortcut="hours", text="We open 9:00 to 18:00.")
    login(page, live_app, agent.user.username)

    # Older history loads as the agent scrolls up, until the first message.
    page.goto(f"{live_app.url}/inbox/chats/{chat.pk}/")
    history = page.locator("#history")
    expect(history).to_contain_text("Bulk message 0-0")
    for _ in range(10):
        if page.locator("text=Bulk message 0-119").count():
            break
        history.evaluate("node => { node.scrollTop = 0; node.dispatchEvent(new Event('scroll')); }")
        page.wait_for_timeout(200)
    expect(history).to_contain_text("Bulk message 0-119")
    assert page.locator(".message").count() == 120

    # "/" offers quick replies; Enter inserts one, Shift+Enter adds a line, Enter sends.
    text = page.locator("#composer-text")
    text.click()
    text.type("/ho")
    expect(page.locator("#quick-menu")).to_contain_text("/hours")
    text.press("Enter")
    expect(text).to_have_value("We open 9:00 to 18:00.")
    text.press("Shift+Enter")
    text.type("See you!")
    expect(text).to_have_value("We open 9:00 to 18:00.\nSee you!")
    text.press("Enter")
    sent = page.locator(".message.out", has_text="See you!")
    expect(sent.locator("[data-testid=mark]")).to_have_attribute("data-status", "sent")

    # An image with a caption, shown from our storage; a file WhatsApp refuses is a clear error.
    page.set_input_files("#composer-file", files=[{"name": "smile.png", "mimeType": "image/png", "buffer": PNG_1PX}])
    expect(page.locator("#composer-attachment")).to_contain_text("smile.png")
    text.fill("Our logo")
    text.press("Enter")
    image = page.locator(".message.out", has_text="Our logo").locator("img")
    expect(image).to_have_count(1)
    assert page.evaluate("src => fetch(src).then(r => r.status)", image.get_attribute("src")) == 200
    page.set_input_files("#composer-file", files=[{"name": "run.exe", "mimeType": "image/png", "buffer": b"MZ"}])
    page.click("[data-testid=send]")
    expect(page.locator("[data-testid=composer-error]")).to_contain_text("does not take this kind of file")
    screenshot(page, "chat-composer")

    # A private note stays on the page and is never sent.
    page.fill("#note-form textarea", "Prefers morning appointments")
    page.click("#note-form button[type=submit]")
    expect(page.locator("#notes")).to_contain_text("Prefers morning appointments")
    assert not Message.objects.filter(text__contains="Prefers morning").exists()

    # A send the provider refuses shows its reason and a retry button.
    page.goto(f"{live_app.url}/inbox/chats/{unreachable.pk}/")
    page.fill("#composer-text", "Are you there?")
    page.press("#composer-text", "Enter")
    failed = page.locator(".message.out", has_text="Are you there?")
    expect(failed.locator("[data-testid=mark]")).to_have_attribute("data-status", "failed")
    expect(failed).to_contain_text("not on WhatsApp")
    expect(failed.locator("button", has_text="Retry")).to_be_visible()

    # Resolving takes the chat out of the open list.
    page.click("[data-testid=resolve]")
    expect(page.locator("[data-testid=chat-status]")).to_have_text("Resolved")
    expect(page.locator("#chat-list")).not_to_contain_text("Nobody Home")


def test_assignment_status_and_order_change_live(live_app, page):
    import requests

    from messaging.services.chats import chat_assign, chat_status_set
    from tests.crm.inbox_fixtures import chat_with_message

    agent = MembershipFactory(organization__name="Acme Dental", user__username="carla")
    colleague = MembershipFactory(organization=agent.organization, user__username="diego")
    number = WhatsAppNumberFactory(organization=agent.organization, name="Reception", state="connected")
    older = chat_with_message(organization=agent.organization, number=number, minutes_ago=30, contact__name="Olga")
    newer = chat_with_message(organization=agent.organization, number=number, minutes_ago=5, contact__name="Nina")
    ContactIdentityFactory(contact=older.contact)  # how ingest knows who writes
    ContactIdentityFactory(contact=newer.contact)
    login(page, live_app, agent.user.username)
    page.goto(f"{live_app.url}/inbox/chats/{older.pk}/")
    expect(page.locator("#inbox")).to_have_attribute("data-live", "true")
    rows = page.locator("#chat-list .chat-row .name")
    expect(rows).to_have_text(["Nina", "Olga"])
    page.evaluate("window.__sameDocument = true")

    # Another chat opens in place (same page, same socket); Back returns to the first one. A message
    # that arrives after its page was rendered but before it is shown still lands in it.
    def webhook(contact, provider_id: str, text: str):
        response = requests.post(
            f"{live_app.url}/webhooks/fake/{number.instance_name}/",
            json={"event": "message", "id": provider_id, "from": contact.phone, "text": text},
            headers={"Authorization": f"Bearer {number.webhook_secret}"},
            timeout=10,
        )
        assert response.status_code == 200

    def render_then_deliver_late(route):
        rendered = route.fetch()
        webhook(newer.contact, "wamid.e2e-late", "Arrived while opening")
        _wait_for(lambda: Message.objects.filter(text="Arrived while opening").exists(), what="the webhook")
        time.sleep(0.5)  # its event reaches the page, which shows the other chat still
        route.fulfill(response=rendered)

    chat_url = f"{live_app.url}/inbox/chats/{newer.pk}/"
    page.route(chat_url, render_then_deliver_late)
    page.click(f"#chat-row-{newer.pk} a")
    expect(page.locator("[data-testid=chat-title]")).to_have_text("Nina")
    expect(page.locator("#history")).to_contain_text("Arrived while opening")
    page.unroute(chat_url)
    expect(page).to_have_url(f"{live_app.url}/inbox/chats/{newer.pk}/")
    expect(page.locator(f"#chat-row-{newer.pk}")).to_have_class(re.compile(r"\bcurrent\b"))
    page.go_back()
    expect(page.locator("[data-testid=chat-title]")).to_have_text("Olga")
    assert page.evaluate("window.__sameDocument") is True

    # A colleague takes the open chat: its assignee and its row change in place.
    chat_assign(chat=older, assignee=colleague)
    expect(page.locator("[data-testid=assignee]")).to_have_value(str(colleague.pk))
    expect(page.locator(f"#chat-row-{older.pk} .row-meta")).to_contain_text("diego")

    # A new message moves its chat to the top of the list.
    webhook(older.contact, "wamid.e2e-1", "Still there?")
    expect(rows).to_have_text(["Olga", "Nina"])
    expect(page.locator("#history")).to_contain_text("Still there?")

    # Another agent resolves the other chat: it leaves the open list.
    chat_status_set(chat=newer, status="resolved")
    expect(rows).to_have_text(["Olga"])
    assert page.evaluate("window.__sameDocument") is True


def test_the_language_switch_turns_the_inbox_into_brazilian_portuguese(live_app, page):
    from tests.crm.inbox_fixtures import chat_with_message, outbound

    agent = MembershipFactory(organization__name="Clínica Sorriso", user__username="joana")
    chat = chat_with_message(organization=agent.organization, text="Bom dia! Tem horário?", contact__name="Paulo")
    outbound(chat, text="Temos às 14h, pode ser?", status="delivered")
    login(page, live_app, agent.user.username)
    page.goto(f"{live_app.url}/inbox/chats/{chat.pk}/")
    page.select_option("[data-testid=language] select", "pt-br")
    expect(page.locator("[data-testid=send]")).to_have_text("Enviar")
    expect(page.locator("[data-testid=nav-inbox]")).to_have_text("Caixa de entrada")
    expect(page.locator("[data-testid=chat-status]")).to_have_text("Aberta")
    page.reload()
    expect(page.locator("[data-testid=resolve]")).to_have_text("Resolver")  # the choice is kept
    screenshot(page, "chat-pt-br")


def test_the_chat_list_loads_more_as_you_scroll(live_app, page):
    from tests.crm.inbox_fixtures import bulk_chats

    agent = MembershipFactory(organization__name="Acme Dental", user__username="eva")
    number = WhatsAppNumberFactory(organization=agent.organization, name="Reception")
    bulk_chats(organization=agent.organization, number=number, count=120)
    login(page, live_app, agent.user.username)
    page.goto(f"{live_app.url}/inbox/")
    rows = page.locator("#chat-list .chat-row")
    expect(rows).to_have_count(50)
    for expected in (100, 120):
        page.locator("#chat-list").evaluate("list => { list.scrollTop = list.scrollHeight; }")
        expect(rows).to_have_count(expected)
    names = rows.locator(".name").all_inner_texts()
    assert names == [f"Bulk {index}" for index in range(120)]  # newest first, none twice
    expect(page.locator("#chat-list .more")).to_have_count(0)
