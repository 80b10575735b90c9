import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

from crm.models import Chat, Membership
from messaging.demo import DEMO_CONVERSATIONS, demo_workspace_ensure
from messaging.models import Message

pytestmark = pytest.mark.django_db


def test_demo_workspace_has_an_admin_an_agent_a_number_and_chats():
    workspace = demo_workspace_ensure()
    organization = workspace.organization
    roles = dict(Membership.objects.filter(organization=organization).values_list("user__username", "role"))
    assert roles == {workspace.admin.username: "admin", workspace.agent.username: "agent"}
    assert organization.numbers.get().provider == "fake"
    assert Chat.objects.filter(organization=organization).count() == len(DEMO_CONVERSATIONS)
    assert Message.objects.filter(organization=organization).count() == sum(len(c[2]) for c in DEMO_CONVERSATIONS)


def test_demo_passwords_are_generated_and_work():
    workspace = demo_workspace_ensure()
    assert workspace.admin.password != workspace.agent.password
    assert len(workspace.admin.password) >= 12
    assert authenticate(username=workspace.agent.username, password=workspace.agent.password)
    assert authenticate(username=workspace.admin.username, password=workspace.admin.password).is_superuser


def test_rerunning_the_demo_keeps_existing_data_and_passwords():
    first = demo_workspace_ensure()
    chat = Chat.objects.filter(organization=first.organization).first()
    chat.status = Chat.Status.RESOLVED
    chat.save(update_fields=["status"])

    second = demo_workspace_ensure()

    assert second.organization == first.organization
    assert (second.admin.password, second.agent.password) == (None, None)
    assert Chat.objects.filter(organization=first.organization).count() == len(DEMO_CONVERSATIONS)
    chat.refresh_from_db()
    assert chat.status == Chat.Status.RESOLVED
    assert authenticate(username=first.agent.username, password=first.agent.password)


def test_demo_seed_command_prints_the_logins(capsys):
    call_command("demo_seed")
    output = capsys.readouterr().out
    assert "demo-admin / " in output
    assert "demo-agent / " in output
    call_command("demo_seed")
    assert "exists" in capsys.readouterr().out


@pytest.fixture
def fake_evolution():
    from providers.fakes.evolution import FakeEvolutionServer

    server = FakeEvolutionServer(api_key="demo-key").start()
    yield server
    server.stop()


def test_demo_number_lives_on_the_fake_evolution_server_and_connects(fake_evolution):
    from messaging.demo import FakeEvolution, demo_number_connect

    evolution = FakeEvolution(url=fake_evolution.url, api_key="demo-key")
    workspace = demo_workspace_ensure(evolution=evolution)
    number = demo_number_connect(evolution=evolution)

    assert number.organization == workspace.organization
    assert (number.provider, number.server.base_url, number.state) == ("evolution", fake_evolution.url, "connected")
    # The real adapter created the instance on the fake (paths Evolution serves), then it was scanned.
    paths = [request.path for request in fake_evolution.requests]
    assert "/instance/create" in paths
    assert fake_evolution.instances[number.instance_name].state == "open"


def test_rerun_moves_the_demo_server_to_the_new_fake_and_reconnects(fake_evolution):
    from messaging.demo import FakeEvolution, demo_number_connect

    demo_workspace_ensure(evolution=FakeEvolution(url="http://127.0.0.1:1", api_key="old"))
    evolution = FakeEvolution(url=fake_evolution.url, api_key="demo-key")
    demo_workspace_ensure(evolution=evolution)
    number = demo_number_connect(evolution=evolution)
    assert number.server.base_url == fake_evolution.url
    assert number.server.api_key == "demo-key"
    assert number.instance_name in fake_evolution.instances


def test_demo_seed_accepts_a_generated_key_that_starts_with_a_dash(fake_evolution):
    # The launcher passes a random key; one in 64 starts with "-" (a real failure of `make run`).
    from config.launcher import demo_seed_arguments

    fake_evolution.api_key = "-starts-with-a-dash"
    call_command("demo_seed", *demo_seed_arguments(fake_evolution.url, "-starts-with-a-dash"))
    number = Chat.objects.get(contact__name="Maria Souza").number
    assert number.server.api_key == "-starts-with-a-dash"
    assert number.state == "connected"
