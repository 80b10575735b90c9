"""What agents do from the inbox: send (text, attachments, idempotent, within quota), retry, assign,
resolve and reopen, private notes, the contact panel and quick replies; bad input gets a clear 4xx
and changes nothing."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from crm.models import ChatNote, Contact, QuickReply
from messaging.models import DailyUsage, Event, Message
from messaging.services.outbound import quota_resets_at
from tests.crm.inbox_fixtures import outbound
from tests.factories import ContactIdentityFactory, MembershipFactory, PlanFactory

pytestmark = pytest.mark.django_db
FETCH = {"X-Requested-With": "fetch"}


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    """Sends enqueue their delivery after commit; these tests look at what the page stored."""
    monkeypatch.setattr("messaging.services.outbound.deliver_enqueue", lambda *args, **kwargs: None)


def _send(client, chat, *, headers=FETCH, **data):
    data.setdefault("idempotency_key", "key-1")
    return client.post(reverse("crm:message-send", args=[chat.pk]), data, headers=headers)


def _outbound_of(chat):
    return Message.objects.filter(chat=chat, direction=Message.Direction.OUTBOUND)


# --- sending ---------------------------------------------------------------------------------------
def test_send_text_queues_a_message_and_answers_its_row(agent_client, workspace):
    response = _send(agent_client, workspace.chat, text="Hello Maria")
    assert response.status_code == 201
    body = response.json()
    message = _outbound_of(workspace.chat).get()
    assert (message.text, message.status, message.sent_by) == ("Hello Maria", "queued", workspace.agent.user)
    assert body["message"] == message.pk
    assert f'id="message-{message.pk}"' in body["html"]
    assert body["idempotency_key"] != "key-1"  # the composer's next send gets a fresh key


def test_send_without_script_redirects_back_to_the_chat(agent_client, workspace):
    response = _send(agent_client, workspace.chat, headers={}, text="Plain form")
    assert response.status_code == 302
    assert response.url == reverse("crm:chat-detail", args=[workspace.chat.pk])
    assert _outbound_of(workspace.chat).get().text == "Plain form"


def test_double_submit_of_one_form_sends_once(agent_client, workspace):
    first = _send(agent_client, workspace.chat, text="Only once", idempotency_key="form-render-7")
    second = _send(agent_client, workspace.chat, text="Only once", idempotency_key="form-render-7")
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["message"] == second.json()["message"]
    assert _outbound_of(workspace.chat).count() == 1
    assert DailyUsage.objects.get(organization=workspace.agent.organization).messages_sent == 1


def test_each_rendering_of_the_composer_has_its_own_key(agent_client, workspace):
    import re

    url = reverse("crm:chat-detail", args=[workspace.chat.pk])
    keys = [re.search(r'name="idempotency_key" value="(\w+)"', agent_client.get(url).content.decode()) for _ in "ab"]
    assert keys[0].group(1) != keys[1].group(1)


@pytest.mark.parametrize("text", ["", "   ", "\n\n"])
def test_empty_message_is_a_form_error(agent_client, workspace, text):
    response = _send(agent_client, workspace.chat, text=text)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Write a message or attach a file."
    assert not _outbound_of(workspace.chat).exists()


def test_empty_message_without_script_shows_the_error_on_the_page(agent_client, workspace):
    response = _send(agent_client, workspace.chat, headers={}, text="")
    assert response.status_code == 400
    assert "Write a message or attach a file." in response.content.decode()


def test_too_long_text_is_refused(agent_client, workspace):
    response = _send(agent_client, workspace.chat, text="x" * 4097)
    assert response.status_code == 400
    assert not _outbound_of(workspace.chat).exists()


def test_attachment_with_caption_is_queued_as_media(agent_client, workspace):
    upload = SimpleUploadedFile("price-list.pdf", b"%PDF-1.4 test", content_type="application/pdf")
    response = _send(agent_client, workspace.chat, text="Our prices", file=upload)
    assert response.status_code == 201
    message = _outbound_of(workspace.chat).get()
    assert (message.type, message.text, message.media_mime_type) == ("document", "Our prices", "application/pdf")
    assert message.media.read() == b"%PDF-1.4 test"


def test_image_type_comes_from_the_file_not_the_browsers_claim(agent_client, workspace):
    upload = SimpleUploadedFile("photo.jpg", b"\xff\xd8\xff", content_type="application/octet-stream")
    assert _send(agent_client, workspace.chat, file=upload).status_code == 201
    assert _outbound_of(workspace.chat).get().type == "image"


def test_oversize_upload_is_refused_with_the_limit(agent_client, workspace, settings):
    settings.INBOX_UPLOAD_MAX_BYTES = 1024
    upload = SimpleUploadedFile("big.pdf", b"x" * 2048, content_type="application/pdf")
    response = _send(agent_client, workspace.chat, text="big", file=upload)
    assert response.status_code == 400
    assert "1.0\xa0KB" in response.json()["error"]["message"]
    assert not _outbound_of(workspace.chat).exists()


@pytest.mark.parametrize("name", ["run.exe", "page.html", "script.js", "noextension"])
def test_unsupported_file_types_are_refused(agent_client, workspace, name):
    upload = SimpleUploadedFile(name, b"MZ...", content_type="image/png")
    response = _send(agent_client, workspace.chat, file=upload)
    assert response.status_code == 400
    assert "does not take this kind of file" in response.json()["error"]["message"]
    assert not _outbound_of(workspace.chat).exists()


def test_over_quota_is_refused_with_when_it_resets(agent_client, workspace):
    plan = PlanFactory(code="tiny", name="Tiny", messages_per_day=1)
    organization = workspace.agent.organization
    organization.plan = plan
    organization.save(update_fields=["plan"])
    assert _send(agent_client, workspace.chat, text="first", idempotency_key="a").status_code == 201
    response = _send(agent_client, workspace.chat, text="second", idempotency_key="b")
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert "resumes at" in error["message"]
    resets_at = quota_resets_at(_outbound_of(workspace.chat).get().timestamp)
    assert error["details"]["resets_at"] == resets_at.isoformat()
    assert _outbound_of(workspace.chat).count() == 1


def test_over_quota_the_composer_is_disabled_with_the_reason(agent_client, workspace):
    plan = PlanFactory(code="tiny", name="Tiny", messages_per_day=1)
    organization = workspace.agent.organization
    organization.plan = plan
    organization.save(update_fields=["plan"])
    _send(agent_client, workspace.chat, text="first")
    page = agent_client.get(reverse("crm:chat-detail", args=[workspace.chat.pk])).content.decode()
    assert "Today's limit of 1 messages is used up" in page
    assert 'data-testid="send" disabled' in page


def test_retry_puts_a_failed_message_back_in_the_outbox(agent_client, workspace):
    message = outbound(workspace.chat, status=Message.Status.FAILED, error="Timeout")
    response = agent_client.post(reverse("crm:message-retry", args=[message.pk]), headers=FETCH)
    assert response.status_code == 200
    message.refresh_from_db()
    assert (message.status, message.error) == ("queued", "")
    assert 'data-status="queued"' in response.json()["html"]


def test_retry_of_a_sent_message_is_a_409(agent_client, workspace):
    message = outbound(workspace.chat, status=Message.Status.SENT)
    response = agent_client.post(reverse("crm:message-retry", args=[message.pk]), headers=FETCH)
    assert response.status_code == 409
    message.refresh_from_db()
    assert message.status == "sent"


# --- chat actions ----------------------------------------------------------------------------------
def test_assign_to_me_to_a_colleague_and_to_nobody(agent_client, workspace):
    chat = workspace.chat
    url = reverse("crm:chat-assign", args=[chat.pk])
    colleague = MembershipFactory(organization=workspace.agent.organization)
    assert agent_client.post(url, {"assignee": "me"}).status_code == 302
    chat.refresh_from_db()
    assert chat.assignee == workspace.agent
    agent_client.post(url, {"assignee": colleague.pk})
    chat.refresh_from_db()
    assert chat.assignee == colleague
    agent_client.post(url, {"assignee": ""})
    chat.refresh_from_db()
    assert chat.assignee is None
    assert Event.objects.filter(chat=chat, type="chat.assigned").count() == 3


@pytest.mark.parametrize("assignee", ["foreign", "999999", "abc"])
def test_assign_to_someone_outside_the_organization_is_a_400(agent_client, workspace, assignee):
    if assignee == "foreign":
        assignee = str(workspace.outsider.pk)
    response = agent_client.post(reverse("crm:chat-assign", args=[workspace.chat.pk]), {"assignee": assignee})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_assignee"
    workspace.chat.refresh_from_db()
    assert workspace.chat.assignee is None


def test_resolve_and_reopen(agent_client, workspace):
    chat = workspace.chat
    url = reverse("crm:chat-status", args=[chat.pk])
    assert agent_client.post(url, {"status": "resolved"}, headers=FETCH).json()["status"] == "resolved"
    chat.refresh_from_db()
    assert chat.status == "resolved"
    agent_client.post(url, {"status": "open"})
    chat.refresh_from_db()
    assert chat.status == "open"


@pytest.mark.parametrize("status", ["archived", "", "RESOLVED"])
def test_unknown_status_is_a_400(agent_client, workspace, status):
    response = agent_client.post(reverse("crm:chat-status", args=[workspace.chat.pk]), {"status": status})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_status"
    workspace.chat.refresh_from_db()
    assert workspace.chat.status == "open"


def test_actions_need_post(agent_client, workspace):
    for name in ("crm:chat-status", "crm:chat-assign", "crm:message-send", "crm:chat-note-add"):
        assert agent_client.get(reverse(name, args=[workspace.chat.pk])).status_code == 405


# --- private notes ---------------------------------------------------------------------------------
def test_private_note_is_stored_shown_and_never_sent(agent_client, workspace):
    response = agent_client.post(
        reverse("crm:chat-note-add", args=[workspace.chat.pk]), {"text": "Prefers mornings"}, headers=FETCH
    )
    assert response.status_code == 201
    note = ChatNote.objects.get()
    assert (note.text, note.author, note.organization) == (
        "Prefers mornings",
        workspace.agent.user,
        workspace.agent.organization,
    )
    assert not _outbound_of(workspace.chat).exists()
    assert not Event.objects.filter(organization=workspace.agent.organization).exclude(type="chat.updated").exists()
    page = agent_client.get(reverse("crm:chat-detail", args=[workspace.chat.pk])).content.decode()
    assert "Prefers mornings" in page


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_note_is_a_400(agent_client, workspace, text):
    response = agent_client.post(reverse("crm:chat-note-add", args=[workspace.chat.pk]), {"text": text})
    assert response.status_code == 400
    assert not ChatNote.objects.exists()


def test_notes_of_another_organization_are_not_shown(agent_client, workspace):
    ChatNote.objects.create(
        organization=workspace.outsider.organization, chat=workspace.foreign_chat, text="B's secret note"
    )
    page = agent_client.get(reverse("crm:chat-detail", args=[workspace.chat.pk])).content.decode()
    assert "B&#x27;s secret note" not in page
    assert "B's secret note" not in page


# --- contact panel ---------------------------------------------------------------------------------
def _contact_post(client, contact, chat, **data):
    fields = {"name": contact.name, "phone": contact.phone, "labels": "", "notes": "", "chat": chat.pk, **data}
    return client.post(reverse("crm:contact-update", args=[contact.pk]), fields)


def test_contact_edit_normalizes_phone_and_labels(agent_client, workspace):
    contact = workspace.chat.contact
    response = _contact_post(
        agent_client,
        contact,
        workspace.chat,
        name="Maria S. Souza",
        phone="+55 (11) 98765-4321",
        labels="VIP, lead ,vip",
        notes="Allergic to latex",
    )
    assert response.status_code == 302
    contact.refresh_from_db()
    assert (contact.name, contact.phone, contact.labels, contact.notes) == (
        "Maria S. Souza",
        "+5511987654321",
        ["vip", "lead"],
        "Allergic to latex",
    )
    assert contact.identities.filter(value="+5511987654321").exists()


@pytest.mark.parametrize("phone", ["12345", "call me", "+0011223344"])
def test_bad_phone_is_a_form_error_and_changes_nothing(agent_client, workspace, phone):
    contact = workspace.chat.contact
    before = contact.phone
    response = _contact_post(agent_client, contact, workspace.chat, name="Changed", phone=phone)
    assert response.status_code == 400
    assert "international format" in response.content.decode()
    contact.refresh_from_db()
    assert (contact.name, contact.phone) == ("Maria Souza", before)


def test_phone_of_another_contact_is_refused(agent_client, workspace):
    other = Contact.objects.create(organization=workspace.agent.organization, name="Other", phone="+5511955554444")
    ContactIdentityFactory(contact=other)
    response = _contact_post(agent_client, workspace.chat.contact, workspace.chat, phone="+5511955554444")
    assert response.status_code == 400
    assert "Another contact already has this phone number." in response.content.decode()


def test_too_many_labels_is_a_form_error(agent_client, workspace):
    labels = ",".join(f"l{index}" for index in range(25))
    response = _contact_post(agent_client, workspace.chat.contact, workspace.chat, labels=labels)
    assert response.status_code == 400
    workspace.chat.contact.refresh_from_db()
    assert workspace.chat.contact.labels == []


def test_another_organizations_contact_is_404(agent_client, workspace):
    foreign = workspace.foreign_chat.contact
    response = _contact_post(agent_client, foreign, workspace.chat, name="Hijacked")
    assert response.status_code == 404
    foreign.refresh_from_db()
    assert foreign.name == "Bob B"


# --- quick replies ---------------------------------------------------------------------------------
def test_quick_replies_are_added_listed_and_offered_in_the_composer(agent_client, workspace):
    url = reverse("crm:quick-replies")
    response = agent_client.post(url, {"shortcut": "/Hours", "text": "We open 9 to 18."})
    assert response.status_code == 302
    reply = QuickReply.objects.get()
    assert (reply.organization, reply.shortcut) == (workspace.agent.organization, "hours")
    assert "/hours" in agent_client.get(url).content.decode()
    page = agent_client.get(reverse("crm:chat-detail", args=[workspace.chat.pk])).content.decode()
    assert '"shortcut": "hours"' in page


@pytest.mark.parametrize(
    ("shortcut", "text", "error"),
    [("", "x", "shortcut"), ("has space", "x", "Use 1 to 32"), ("ok", "", "text"), ("hours", "dup", "already exists")],
)
def test_bad_quick_replies_are_form_errors(agent_client, workspace, shortcut, text, error):
    QuickReply.objects.create(organization=workspace.agent.organization, shortcut="hours", text="We open 9 to 18.")
    response = agent_client.post(reverse("crm:quick-replies"), {"shortcut": shortcut, "text": text})
    assert response.status_code == 400
    assert QuickReply.objects.count() == 1
    if error not in ("shortcut", "text"):
        assert error in response.content.decode()


def test_quick_replies_of_another_organization_are_invisible_and_404(agent_client, workspace):
    foreign = QuickReply.objects.create(organization=workspace.outsider.organization, shortcut="secret", text="B only")
    assert "B only" not in agent_client.get(reverse("crm:quick-replies")).content.decode()
    page = agent_client.get(reverse("crm:chat-detail", args=[workspace.chat.pk])).content.decode()
    assert "B only" not in page
    response = agent_client.post(reverse("crm:quick-reply-delete", args=[foreign.pk]))
    assert response.status_code == 404
    assert QuickReply.objects.filter(pk=foreign.pk).exists()


def test_quick_reply_delete(agent_client, workspace):
    reply = QuickReply.objects.create(organization=workspace.agent.organization, shortcut="bye", text="Bye!")
    assert agent_client.post(reverse("crm:quick-reply-delete", args=[reply.pk])).status_code == 302
    assert not QuickReply.objects.exists()
