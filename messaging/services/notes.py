"""Private notes on a chat: for the team only. They are rows of their own, never messages, so
nothing here can reach the outbox or a provider."""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from crm.models import Chat, ChatNote

MAX_NOTE_CHARS = 4000


@transaction.atomic
def chat_note_add(*, chat: Chat, author, text: str) -> ChatNote:
    """Leave a private note on the chat. Raise ValidationError for an empty or too long note."""
    text = (text or "").strip()
    if not text:
        raise ValidationError(_("Write the note first."), code="empty")
    if len(text) > MAX_NOTE_CHARS:
        raise ValidationError(
            _("A note has at most %(limit)s characters.") % {"limit": MAX_NOTE_CHARS}, code="too_long"
        )
    return ChatNote.objects.create(organization_id=chat.organization_id, chat=chat, author=author, text=text)
