"""WhatsApp content is text, never markup: escaped everywhere the inbox shows it, links made safe."""

import pytest
from django.urls import reverse

from crm.models import Chat
from crm.templatetags.inbox import linkify
from tests.factories import MessageFactory

pytestmark = pytest.mark.django_db

ATTACK = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def test_message_text_contact_name_and_preview_are_escaped(agent_client, workspace):
    chat = workspace.chat
    MessageFactory(chat=chat, text=ATTACK)
    Chat.objects.filter(pk=chat.pk).update(last_message_preview=ATTACK)
    chat.contact.name = "<b onmouseover=alert(2)>Mallory</b>"
    chat.contact.save(update_fields=["name"])
    urls = [reverse("crm:inbox"), reverse("crm:chat-detail", args=[chat.pk]), reverse("crm:chat-row", args=[chat.pk])]
    for url in urls:
        page = agent_client.get(url).content.decode()
        assert "<script>alert" not in page
        assert "<img src=x" not in page
        assert "<b onmouseover" not in page
    page = agent_client.get(reverse("crm:chat-detail", args=[chat.pk])).content.decode()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


def test_links_are_http_or_https_only_and_open_safely():
    html = linkify("see https://example.com/a?b=1&c=2. and javascript:alert(1) or data:text/html,<b>x</b>")
    assert (
        '<a href="https://example.com/a?b=1&amp;c=2" target="_blank" rel="noopener noreferrer nofollow">'
        "https://example.com/a?b=1&amp;c=2</a>." in html
    )
    assert 'href="javascript' not in html
    assert 'href="data' not in html
    assert "&lt;b&gt;" in html


def test_a_quote_cannot_break_out_of_the_link():
    html = linkify('https://evil.example/"onmouseover="alert(1)')
    assert html.startswith('<a href="https://evil.example/"')
    assert 'onmouseover="alert' not in html
    assert "&quot;onmouseover=&quot;alert(1)" in html


def test_text_without_links_is_only_escaped():
    assert linkify("1 < 2 & 3 > 2") == "1 &lt; 2 &amp; 3 &gt; 2"
    assert linkify("") == ""
