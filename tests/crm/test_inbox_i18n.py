"""English and Brazilian Portuguese: chosen from the browser, or from the language switch (stored)."""

import gettext
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

pytestmark = pytest.mark.django_db
LOCALE = Path(settings.BASE_DIR) / "locale" / "pt_BR" / "LC_MESSAGES"


def test_english_by_default(agent_client):
    page = agent_client.get(reverse("crm:inbox")).content.decode()
    assert '<html lang="en">' in page
    assert "Inbox" in page
    assert "No chats match" not in page


def test_the_browsers_brazilian_portuguese_is_used(agent_client, workspace):
    response = agent_client.get(
        reverse("crm:chat-detail", args=[workspace.chat.pk]), HTTP_ACCEPT_LANGUAGE="pt-BR,pt;q=0.9"
    )
    page = response.content.decode()
    assert '<html lang="pt-br">' in page
    for text in ("Caixa de entrada", "Enviar", "Resolver", "Notas privadas", "Responsável", "Aberta"):
        assert text in page, text


def test_the_language_switch_stores_the_choice_over_the_browsers(agent_client):
    response = agent_client.post(reverse("set_language"), {"language": "pt-br", "next": reverse("crm:inbox")})
    assert response.status_code == 302
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "pt-br"
    page = agent_client.get(reverse("crm:inbox"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Buscar nome, telefone ou mensagem" in page
    agent_client.post(reverse("set_language"), {"language": "en", "next": "/"})
    page = agent_client.get(reverse("crm:inbox"), HTTP_ACCEPT_LANGUAGE="pt-BR").content.decode()
    assert "Search name, phone or message" in page


def test_ids_are_never_localized(agent_client, workspace, settings):
    # With thousand separators on, Portuguese writes 1234567 as 1.234.567: an element id, a data
    # attribute or a URL the page's script builds must keep the machine's digits.
    from tests.factories import MessageFactory

    settings.USE_THOUSAND_SEPARATOR = True
    message = MessageFactory(pk=1234567, chat=workspace.chat, text="Olá")
    page = agent_client.get(
        reverse("crm:chat-detail", args=[workspace.chat.pk]), HTTP_ACCEPT_LANGUAGE="pt-BR"
    ).content.decode()
    assert f'id="message-{message.pk}"' in page
    assert 'data-message="1234567"' in page
    row = agent_client.get(reverse("crm:message-row", args=[message.pk]), HTTP_ACCEPT_LANGUAGE="pt-BR")
    assert 'data-message="1234567"' in row.content.decode()


def test_errors_are_translated_too(agent_client, workspace):
    response = agent_client.post(
        reverse("crm:message-send", args=[workspace.chat.pk]),
        {"text": "  ", "idempotency_key": "k"},
        headers={"X-Requested-With": "fetch"},
        HTTP_ACCEPT_LANGUAGE="pt-BR",
    )
    assert response.json()["error"]["message"] == "Escreva uma mensagem ou anexe um arquivo."


def test_every_string_is_translated_and_the_compiled_catalog_is_current():
    po = (LOCALE / "django.po").read_text(encoding="utf-8")
    assert '#, fuzzy\nmsgid "' not in po
    untranslated = re.findall(r'\nmsgid "((?:[^"\n]|\\")+)"\nmsgstr ""\n', po)
    assert untranslated == []
    with (LOCALE / "django.mo").open("rb") as compiled:
        catalog = gettext.GNUTranslations(compiled)
    pairs = re.findall(r'\nmsgid "((?:[^"\n]|\\")+)"\nmsgstr "((?:[^"\n]|\\")+)"\n', po)
    stale = [msgid for msgid, msgstr in pairs if catalog.gettext(_unquote(msgid)) != _unquote(msgstr)]
    assert stale == []


def _unquote(text: str) -> str:
    return text.replace('\\"', '"')
