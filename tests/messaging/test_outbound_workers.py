"""The outbox with real Celery worker processes, the fake Evolution server and the real adapter.

Each test publishes on a broker queue of its own (outbound_worker.broker_queue) and its workers read
the test database, so rows must be committed: these tests are transactional. The test process
plays the beat: it calls outbox_sweep() while it waits, as the 30-second periodic task would.
"""

import random
import time
from collections import Counter, defaultdict

import pytest

from messaging.models import Message
from messaging.services.outbound import message_send, outbox_sweep
from providers.fakes.evolution import FakeEvolutionServer
from tests.factories import ChatFactory, ContactFactory
from tests.messaging.outbound_worker import OutboxWorker, broker_queue, wait_until
from tests.messaging.test_outbound import evolution_number

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _worker_settings(settings):
    settings.PROVIDER_CONNECT_TIMEOUT = 1.0
    settings.PROVIDER_READ_TIMEOUT = 2.0
    settings.PUBLIC_BASE_URL = "http://127.0.0.1:9"
    # Attempts to spare: these tests are about never losing or doubling, not about giving up.
    settings.MESSAGE_MAX_ATTEMPTS = 50
    settings.OUTBOX_RETRY_BASE_SECONDS = 0.1
    settings.OUTBOX_RETRY_MAX_SECONDS = 0.5
    settings.OUTBOX_STUCK_AFTER_SECONDS = 2
    settings.PROVIDER_BREAKER_FAILURES = 5
    settings.PROVIDER_BREAKER_RESET_SECONDS = 1


@pytest.fixture
def queue():
    with broker_queue() as name:
        yield name


@pytest.fixture
def evolution():
    server = FakeEvolutionServer(webhook_delay_seconds=0, auto_status=False).start()
    yield server
    server.stop()


def chats_on_one_number(server: FakeEvolutionServer, count: int) -> list:
    number = evolution_number(server)
    organization = number.organization
    # Phones of our own: the factory's sequence can end in 0000, which the fake treats as "not on WhatsApp".
    contacts = [ContactFactory(organization=organization, phone=f"+5511987{index + 1:06d}") for index in range(count)]
    return [ChatFactory(organization=organization, number=number, contact=contact) for contact in contacts]


def burst(chats: list, total: int, *, label: str = "msg") -> list[Message]:
    """Accept `total` messages round-robin over `chats`; return them in acceptance order."""
    messages = []
    for index in range(total):
        chat = chats[index % len(chats)]
        message, _ = message_send(organization=chat.organization, chat=chat, text=f"{label}-{index}")
        messages.append(message)
    return messages


def provider_texts(server: FakeEvolutionServer) -> list[tuple[str, str]]:
    """Return (recipient jid, text) of every send the fake recorded, in the order it received them."""
    return [
        (raw["key"]["remoteJid"], raw["message"]["conversation"])
        for instance in server.instances.values()
        for raw in list(instance.messages)
    ]


def all_sent(messages: list[Message], *, sweep: bool = False):
    ids = [message.pk for message in messages]
    last_sweep = [0.0]

    def check() -> bool:
        if sweep and time.monotonic() - last_sweep[0] > 0.5:
            outbox_sweep()
            last_sweep[0] = time.monotonic()
        return Message.objects.filter(pk__in=ids, status="sent").count() == len(ids)

    return check


def assert_each_sent_once(server: FakeEvolutionServer, messages: list[Message]) -> None:
    counts = Counter(text for _, text in provider_texts(server))
    expected = {message.text for message in messages}
    assert set(counts) == expected, f"missing: {sorted(expected - set(counts))[:10]}"
    assert [text for text, count in counts.items() if count > 1] == []
    statuses = Counter(Message.objects.filter(pk__in=[m.pk for m in messages]).values_list("status", flat=True))
    assert statuses == {"sent": len(messages)}


def test_burst_of_500_through_a_provider_outage_is_sent_exactly_once(queue, evolution):
    chats = chats_on_one_number(evolution, 10)
    evolution.faults_set(error_rate=1.0)  # the provider is down when the burst arrives
    with OutboxWorker(queue, concurrency=2), OutboxWorker(queue, concurrency=2):
        messages = burst(chats, 500)
        wait_until(lambda: Message.objects.filter(attempts__gt=0).exists(), timeout=30)
        time.sleep(1.5)  # failures pile up; the circuit opens
        assert not Message.objects.filter(status="sent").exists()
        evolution.faults_set(error_rate=0.0)

        assert wait_until(all_sent(messages, sweep=True), timeout=90)

    assert_each_sent_once(evolution, messages)


def test_worker_killed_mid_burst_loses_none_and_duplicates_none(queue, evolution):
    """SIGKILL the worker (pool children included) while it holds claimed, prefetched and delayed tasks.

    The kill lands while every provider call is slow and refused, so the provider records nothing
    from the killed calls: what this test proves is that our own recovery (the sweep, stale
    redeliveries, the claim) neither drops a message nor sends one twice. A send the provider
    accepted in the instant before the kill, unrecorded by us, can only be resent: Evolution takes
    no idempotency key, so that window is closed only by providers that do.
    """
    chats = chats_on_one_number(evolution, 6)
    evolution.faults_set(error_rate=1.0, latency_ms=400)
    worker = OutboxWorker(queue, concurrency=2, env={"PROVIDER_BREAKER_FAILURES": "1000"}).start()
    try:
        messages = burst(chats, 150)
        # Let prefetched and delayed tasks pile up, then kill at a moment a send is in flight.
        time.sleep(0.5)
        assert wait_until(lambda: Message.objects.filter(status="sending").exists(), timeout=30, interval=0.01)
        worker.kill()
    finally:
        worker.stop()
    left_behind = Message.objects.filter(pk__in=[m.pk for m in messages], status="sending").count()
    assert left_behind > 0  # the kill caught claimed messages mid-send

    # The killed workers' calls are still inside the fake's latency: let them end refused before the
    # provider recovers, or the fake would accept sends from a dead worker (the ambiguous window above).
    time.sleep(0.8)
    evolution.faults_set(error_rate=0.0, latency_ms=0)
    with OutboxWorker(queue, concurrency=2):
        assert wait_until(all_sent(messages, sweep=True), timeout=90)

    assert_each_sent_once(evolution, messages)


def test_per_chat_order_holds_with_four_worker_processes(queue, evolution):
    chats = chats_on_one_number(evolution, 8)
    evolution.faults_set(latency_ms=2)
    with OutboxWorker(queue, concurrency=2), OutboxWorker(queue, concurrency=2):
        messages = []
        for round_number in range(3):  # bursts, with a few temporary failures mixed in to force retries
            messages += burst(chats, 48, label=f"round{round_number}")
            evolution.fail_next(random.randint(1, 3), status=503)
        assert wait_until(all_sent(messages, sweep=True), timeout=90)

    accepted = defaultdict(list)
    for message in messages:
        accepted[message.chat.contact.phone.lstrip("+") + "@s.whatsapp.net"].append(message.text)
    received = defaultdict(list)
    for jid, text in provider_texts(evolution):
        received[jid].append(text)
    assert received == accepted
    assert_each_sent_once(evolution, messages)
