"""Template filters of the inbox: safe links in message text, capped badges, sort keys."""

import re

from django import template
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from messaging.selectors import cursor_of

register = template.Library()

# Only http and https become links: no javascript:, data: or mailto: from WhatsApp content.
_URL = re.compile(r"\bhttps?://[^\s<>\"'`]+", re.IGNORECASE)
_TRAILING = ".,;:!?)]}"
UNREAD_CAP = 99


@register.filter
def linkify(text: str) -> SafeString:
    """Escape `text` and make its http(s) URLs links that open apart and pass no referrer."""
    text = text or ""
    parts: list[str] = []
    position = 0
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(_TRAILING)
        start, end = match.start(), match.start() + len(url)
        parts.append(escape(text[position:start]))
        parts.append(format_html('<a href="{}" target="_blank" rel="noopener noreferrer nofollow">{}</a>', url, url))
        position = end
    parts.append(escape(text[position:]))
    return mark_safe("".join(parts))  # noqa: S308 - every piece above was escaped


@register.filter
def unread_badge(count: int) -> str:
    """Return the unread count as a badge shows it: "99+" beyond 99, empty for none."""
    if not count:
        return ""
    return f"{UNREAD_CAP}+" if count > UNREAD_CAP else str(count)


@register.filter
def chat_sort_key(chat) -> str:
    """The chat's place in the list (its keyset cursor), which the page's script sorts new rows by."""
    return cursor_of(chat.last_message_at, chat.pk)


@register.filter
def list_time(moment) -> str:
    """A chat row's time: the hour today, the date before."""
    if moment is None:
        return ""
    local = timezone.localtime(moment)
    if local.date() == timezone.localdate():
        return date_format(local, "H:i")
    return date_format(local, "SHORT_DATE_FORMAT")


@register.filter
def has_media(message) -> bool:
    """Whether the message's file is in our storage: inbound once copied, outbound from the start."""
    if not message.media:
        return False
    return message.media_state == "stored" or message.direction == "out"
