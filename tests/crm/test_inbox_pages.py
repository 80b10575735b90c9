"""The inbox pages: chat list (tabs, filters, search, keyset paging), conversation (history paging,
media, delivery marks), the fragments the page's script fetches, and the wall between organizations."""

from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone

from crm.models import Chat
from messaging.models import Message
from messaging.selectors import CHAT_PAGE_SIZE, MESSAGE_PAGE_SIZE
from tests.crm.inbox_fixtures import bulk_chats, chat_with_message, outbound
from tests.factories import MembershipFactory, MessageFactory, WhatsAppNumberFactory

pytestmark = pytest.mark.django_db


def _page(response) -> str:
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


# --- access -----------------------------------------------------------------------------------------
def test_inbox_requires_login(client):
    response = client.get(reverse("crm:inbox"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_user_without_an_organization_gets_404(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("lonely", password="x" * 12))
    assert client.get(reverse("crm:inbox")).status_code == 404


def test_nav_links_to_the_inbox(agent_client):
    assert reverse("crm:inbox") in _page(agent_client.get(reverse("crm:home")))


@pytest.mark.parametrize(
    "name",
    ["crm:chat-detail", "crm:chat-row", "crm:chat-messages"],
)
def test_another_organizations_chat_pages_are_404(agent_client, workspace, name):
    assert agent_client.get(reverse(name, args=[workspace.foreign_chat.pk])).status_code == 404


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("crm:message-send", {"text": "hi", "idempotency_key": "k1"}),
        ("crm:chat-read", {}),
        ("crm:chat-assign", {"assignee": "me"}),
        ("crm:chat-status", {"status": "resolved"}),
        ("crm:chat-note-add", {"text": "peek"}),
    ],
)
def test_another_organizations_chat_actions_are_404_and_change_nothing(agent_client, workspace, name, data):
    chat = workspace.foreign_chat
    response = agent_client.post(reverse(name, args=[chat.pk]), data)
    assert response.status_code == 404
    chat.refresh_from_db()
    assert (chat.status, chat.assignee_id, chat.unread_count) == ("open", None, 0)
    assert chat.messages.count() == 1
    assert chat.notes.count() == 0


def test_another_organizations_messages_are_404(agent_client, workspace):
    foreign = outbound(workspace.foreign_chat, status=Message.Status.FAILED, error="boom")
    assert agent_client.get(reverse("crm:message-row", args=[foreign.pk])).status_code == 404
    assert agent_client.post(reverse("crm:message-retry", args=[foreign.pk])).status_code == 404
    foreign.refresh_from_db()
    assert foreign.status == Message.Status.FAILED


def test_another_organizations_chats_never_appear_in_the_list_or_search(agent_client):
    page = _page(agent_client.get(reverse("crm:inbox"), {"q": "Secret"}))
    assert "Bob B" not in page
    assert "Secret of B" not in page
    assert "Bob B" not in _page(agent_client.get(reverse("crm:inbox")))


def test_the_list_follows_the_organization_chosen_for_the_session(client, workspace):
    # A member of both sees only the organization they work in now.
    both = MembershipFactory(organization=workspace.outsider.organization, user=workspace.agent.user)
    client.force_login(workspace.agent.user)
    assert "Maria Souza" in _page(client.get(reverse("crm:inbox")))
    client.post(reverse("crm:organization-switch"), {"organization_id": both.organization_id})
    page = _page(client.get(reverse("crm:inbox")))
    assert "Bob B" in page
    assert "Maria Souza" not in page
    assert client.get(reverse("crm:chat-detail", args=[workspace.chat.pk])).status_code == 404


# --- the list ---------------------------------------------------------------------------------------
def test_list_shows_contact_preview_time_and_number(agent_client, workspace):
    page = _page(agent_client.get(reverse("crm:inbox")))
    assert "Maria Souza" in page
    assert "Oi, tudo bem?" in page
    assert "Reception" in page
    assert timezone.localtime(workspace.chat.last_message_at).strftime("%H:%M") in page


def test_contact_labels_show_in_the_list(agent_client, workspace):
    contact = workspace.chat.contact
    contact.labels = ["vip", "<b>lead</b>"]
    contact.save(update_fields=["labels"])
    page = _page(agent_client.get(reverse("crm:inbox")))
    assert '<span class="label">vip</span>' in page
    assert '<span class="label">&lt;b&gt;lead&lt;/b&gt;</span>' in page


@pytest.mark.parametrize(("count", "badge"), [(0, None), (7, ">7<"), (99, ">99<"), (100, ">99+<"), (5000, ">99+<")])
def test_unread_badge_is_capped(agent_client, workspace, count, badge):
    Chat.objects.filter(pk=workspace.chat.pk).update(unread_count=count)
    page = _page(agent_client.get(reverse("crm:inbox")))
    if badge is None:
        assert 'data-testid="unread"' not in page
    else:
        assert badge in page


def test_status_tabs_show_only_that_status(agent_client, workspace):
    resolved = chat_with_message(organization=workspace.agent.organization, contact__name="Done Dan", status="resolved")
    pending = chat_with_message(organization=workspace.agent.organization, contact__name="Wait Will", status="pending")
    open_page = _page(agent_client.get(reverse("crm:inbox")))
    assert "Maria Souza" in open_page
    assert str(resolved.contact) not in open_page
    resolved_page = _page(agent_client.get(reverse("crm:inbox"), {"status": "resolved"}))
    assert "Done Dan" in resolved_page
    assert "Maria Souza" not in resolved_page
    assert "Wait Will" in _page(agent_client.get(reverse("crm:inbox"), {"status": "pending"}))
    assert pending.pk


def test_mine_and_unassigned_views(agent_client, workspace):
    organization = workspace.agent.organization
    colleague = MembershipFactory(organization=organization)
    chat_with_message(organization=organization, contact__name="Mine Mia", assignee=workspace.agent)
    chat_with_message(organization=organization, contact__name="Theirs Theo", assignee=colleague)
    mine = _page(agent_client.get(reverse("crm:inbox"), {"view": "mine"}))
    assert "Mine Mia" in mine
    assert "Theirs Theo" not in mine
    assert "Maria Souza" not in mine
    unassigned = _page(agent_client.get(reverse("crm:inbox"), {"view": "unassigned"}))
    assert "Maria Souza" in unassigned
    assert "Mine Mia" not in unassigned
    assert "Theirs Theo" not in unassigned
    everyone = _page(agent_client.get(reverse("crm:inbox"), {"view": "all"}))
    assert all(name in everyone for name in ("Mine Mia", "Theirs Theo", "Maria Souza"))


def test_filter_by_number(agent_client, workspace):
    other_number = WhatsAppNumberFactory(organization=workspace.agent.organization, name="Sales")
    chat_with_message(organization=workspace.agent.organization, number=other_number, contact__name="Sales Sam")
    page = _page(agent_client.get(reverse("crm:inbox"), {"number": other_number.pk}))
    assert "Sales Sam" in page
    assert "Maria Souza" not in page


@pytest.mark.parametrize(("term", "found"), [("maria", True), ("+551190", True), ("tudo bem", True), ("nobody", False)])
def test_search_by_name_phone_and_message_text(agent_client, workspace, term, found):
    if term.startswith("+"):
        term = workspace.chat.contact.phone[:8]
    page = _page(agent_client.get(reverse("crm:inbox"), {"q": term}))
    assert ("Maria Souza" in page) is found
    if not found:
        assert "No chats match your search." in page


def test_search_by_phone_ignores_how_it_is_spelled(agent_client, workspace):
    contact = workspace.chat.contact
    contact.phone = "+5511987654321"
    contact.save(update_fields=["phone"])
    assert "Maria Souza" in _page(agent_client.get(reverse("crm:inbox"), {"q": "(11) 98765-4321"}))


def test_search_finds_older_message_text_not_only_the_preview(agent_client, workspace):
    MessageFactory(chat=workspace.chat, text="the invoice number is 4471", timestamp=timezone.now() - timedelta(days=3))
    assert "Maria Souza" in _page(agent_client.get(reverse("crm:inbox"), {"q": "invoice number"}))


@pytest.mark.parametrize(
    "query", [{"status": "archived"}, {"view": "everything"}, {"number": "abc"}, {"after": "not-a-cursor"}]
)
def test_unknown_filter_values_are_a_400_with_the_error_shape(agent_client, query):
    response = agent_client.get(reverse("crm:inbox"), query)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_parameter"


def test_list_pages_by_keyset_without_gaps_or_repeats(agent_client, workspace):
    organization = workspace.agent.organization
    bulk_chats(organization=organization, number=workspace.number, count=CHAT_PAGE_SIZE * 2 + 5)
    first = _page(agent_client.get(reverse("crm:inbox")))
    assert first.count('class="chat-row') == CHAT_PAGE_SIZE
    seen = []
    url = reverse("crm:chat-rows")
    after = _next_after(first)
    while after:
        page = _page(agent_client.get(url, {"after": after}))
        seen.extend(_row_ids(page))
        after = _next_after(page)
    all_ids = _row_ids(first) + seen
    expected = list(
        Chat.objects.filter(organization=organization, status="open")
        .order_by("-last_message_at", "-id")
        .values_list("pk", flat=True)
    )
    assert all_ids == expected


def _row_ids(page: str) -> list[int]:
    import re

    return [int(found) for found in re.findall(r'id="chat-row-(\d+)"', page)]


def _next_after(page: str) -> str | None:
    import re

    found = re.search(r"data-more-url=\"[^\"]*after=([0-9_]+)\"", page)
    return found.group(1) if found else None


def test_chat_row_fragment_answers_204_when_the_chat_left_the_list(agent_client, workspace):
    url = reverse("crm:chat-row", args=[workspace.chat.pk])
    assert "Maria Souza" in _page(agent_client.get(url, {"status": "open"}))
    assert agent_client.get(url, {"status": "resolved"}).status_code == 204


# --- the conversation -------------------------------------------------------------------------------
def test_opening_a_chat_marks_it_read_and_logs_the_event(agent_client, workspace):
    Chat.objects.filter(pk=workspace.chat.pk).update(unread_count=3)
    page = _page(agent_client.get(reverse("crm:chat-detail", args=[workspace.chat.pk])))
    workspace.chat.refresh_from_db()
    assert workspace.chat.unread_count == 0
    assert "Oi, tudo bem?" in page
    assert workspace.agent.organization.events.filter(type="chat.updated", chat=workspace.chat).exists()


def test_history_groups_by_day_and_pages_older_messages_by_keyset(agent_client, workspace):
    chat = workspace.chat
    start = timezone.now() - timedelta(days=2)
    for index in range(MESSAGE_PAGE_SIZE + 10):
        MessageFactory(chat=chat, text=f"History {index:03d}", timestamp=start + timedelta(minutes=index * 30))
    page = _page(agent_client.get(reverse("crm:chat-detail", args=[chat.pk])))
    assert "History 059" in page
    assert "History 009" not in page
    assert page.count('class="day"') >= 2
    import re

    cursor = re.search(r'data-older-cursor="([0-9_]+)"', page).group(1)
    older = _page(agent_client.get(reverse("crm:chat-messages", args=[chat.pk]), {"before": cursor}))
    assert "History 000" in older
    assert "History 010" in older
    assert "History 059" not in older
    assert "data-older-cursor" not in older  # the beginning of the chat


def test_history_with_a_bad_cursor_is_a_400(agent_client, workspace):
    response = agent_client.get(reverse("crm:chat-messages", args=[workspace.chat.pk]), {"before": "x_y"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_parameter"


@pytest.mark.parametrize(
    ("status", "mark"),
    [("queued", 'data-status="queued"'), ("sent", "✓"), ("delivered", "✓✓"), ("read", "mark-read")],
)
def test_outbound_messages_show_their_delivery_mark(agent_client, workspace, status, mark):
    message = outbound(workspace.chat, status=status)
    page = _page(agent_client.get(reverse("crm:message-row", args=[message.pk])))
    assert f'data-status="{status}"' in page
    assert mark in page


def test_failed_message_shows_the_reason_and_a_retry_button(agent_client, workspace):
    message = outbound(workspace.chat, status=Message.Status.FAILED, error="Recipient is not on WhatsApp")
    page = _page(agent_client.get(reverse("crm:chat-detail", args=[workspace.chat.pk])))
    assert "Recipient is not on WhatsApp" in page
    assert reverse("crm:message-retry", args=[message.pk]) in page


@pytest.mark.parametrize(
    ("kind", "mime", "expected"),
    [
        ("image", "image/jpeg", "<img src="),
        ("sticker", "image/webp", 'class="sticker"'),
        ("audio", "audio/ogg", "<audio controls"),
        ("video", "video/mp4", "<video controls"),
        ("document", "application/pdf", 'class="document"'),
    ],
)
def test_media_is_rendered_from_our_storage(agent_client, workspace, kind, mime, expected):
    message = MessageFactory(
        chat=workspace.chat,
        type=kind,
        media_mime_type=mime,
        media_filename="file.bin",
        media_state=Message.MediaState.STORED,
        text="",
    )
    message.media.save("file.bin", ContentFile(b"bytes"), save=True)
    page = _page(agent_client.get(reverse("crm:message-row", args=[message.pk])))
    media_url = reverse("messaging:message-media", args=[message.pk])
    assert expected in page
    assert media_url in page
    assert "http://provider" not in page
    assert agent_client.get(media_url).status_code == 200


def test_media_still_downloading_or_failed_says_so(agent_client, workspace):
    pending = MessageFactory(chat=workspace.chat, type="image", media_state="pending", media_source="http://provider/x")
    failed = MessageFactory(chat=workspace.chat, type="image", media_state="failed")
    assert "Downloading media" in _page(agent_client.get(reverse("crm:message-row", args=[pending.pk])))
    assert "could not be downloaded" in _page(agent_client.get(reverse("crm:message-row", args=[failed.pk])))


def test_location_links_to_a_map_over_https(agent_client, workspace):
    message = MessageFactory(
        chat=workspace.chat, type="location", text="Clinic", extra={"latitude": -23.5, "longitude": -46.6}
    )
    page = _page(agent_client.get(reverse("crm:message-row", args=[message.pk])))
    assert "https://www.openstreetmap.org/?mlat=-23.5&amp;mlon=-46.6" in page
    assert 'rel="noopener noreferrer nofollow"' in page


def test_outbound_attachment_is_served_to_members(agent_client, workspace):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from messaging.services.outbound import message_send

    upload = SimpleUploadedFile("photo.png", b"\x89PNG", content_type="image/png")
    message, _ = message_send(organization=workspace.chat.organization, chat=workspace.chat, media=upload)
    response = agent_client.get(reverse("messaging:message-media", args=[message.pk]))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"\x89PNG"
