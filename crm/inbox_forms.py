"""Forms of the inbox pages: the composer, the contact panel, notes and quick replies.

They validate what a person typed; the services they feed validate again what the database must
hold (a form is a convenience, a service is the rule).
"""

import mimetypes
import uuid

from django import forms
from django.conf import settings
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext_lazy as _

from crm.models import Chat

MAX_TEXT_CHARS = 4096
MAX_SEARCH_CHARS = 100
# What WhatsApp accepts as media (Cloud API "supported media types"); the type is taken from the
# file's extension, never from the browser's Content-Type alone.
UPLOAD_TYPES = frozenset(
    {
        "image/jpeg",
        "image/png",
        "image/webp",
        "audio/ogg",
        "audio/mpeg",
        "audio/mp4",
        "audio/aac",
        "audio/amr",
        "video/mp4",
        "video/3gpp",
        "application/pdf",
        "text/plain",
        "text/csv",
        "application/msword",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.ms-excel",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.ms-powerpoint",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "application/zip",
    }
)


# Whose chats the list shows (ChatFilters.view), with their tab labels.
VIEW_CHOICES = [("all", _("All")), ("mine", _("Mine")), ("unassigned", _("Unassigned"))]


def idempotency_key_new() -> str:
    """A fresh key for one rendering of the composer: submitting that form twice sends once."""
    return uuid.uuid4().hex


class MessageComposeForm(forms.Form):
    text = forms.CharField(required=False, strip=False, max_length=MAX_TEXT_CHARS, widget=forms.Textarea)
    file = forms.FileField(required=False)
    idempotency_key = forms.CharField(max_length=128, widget=forms.HiddenInput)

    def clean_file(self):
        upload = self.cleaned_data.get("file")
        if not upload:
            return None
        limit = settings.INBOX_UPLOAD_MAX_BYTES
        if upload.size > limit:
            raise forms.ValidationError(
                _("The file is %(size)s; the largest you can send is %(limit)s.")
                % {"size": filesizeformat(upload.size), "limit": filesizeformat(limit)},
                code="too_big",
            )
        if upload.size == 0:
            raise forms.ValidationError(_("The file is empty."), code="empty")
        mime_type, _encoding = mimetypes.guess_type(upload.name or "")
        if mime_type not in UPLOAD_TYPES:
            raise forms.ValidationError(
                _("WhatsApp does not take this kind of file. Send images, audio, video, PDF or office documents."),
                code="file_type",
            )
        # message_send stores the type it is given: make it the one we checked.
        upload.content_type = mime_type
        return upload

    def clean(self):
        cleaned = super().clean()
        text = (cleaned.get("text") or "").strip()
        cleaned["text"] = text
        if not text and not cleaned.get("file") and not self.errors:
            raise forms.ValidationError(_("Write a message or attach a file."), code="empty")
        return cleaned


class ChatFiltersForm(forms.Form):
    """The inbox list's query string; anything unknown is a 400, not a silently different list."""

    status = forms.ChoiceField(choices=Chat.Status.choices, required=False)
    view = forms.ChoiceField(choices=VIEW_CHOICES, required=False)
    number = forms.IntegerField(required=False, min_value=1)
    q = forms.CharField(required=False, max_length=MAX_SEARCH_CHARS)
    after = forms.CharField(required=False, max_length=64)


class ContactForm(forms.Form):
    name = forms.CharField(required=False, max_length=200, label=_("Name"))
    phone = forms.CharField(required=False, max_length=32, label=_("Phone"))
    labels = forms.CharField(required=False, max_length=800, label=_("Labels"), help_text=_("Separate with commas."))
    notes = forms.CharField(required=False, max_length=4000, widget=forms.Textarea(attrs={"rows": 3}), label=_("Notes"))


class NoteForm(forms.Form):
    text = forms.CharField(max_length=4000, widget=forms.Textarea(attrs={"rows": 2}), label=_("Private note"))


class QuickReplyForm(forms.Form):
    shortcut = forms.CharField(max_length=33, label=_("Shortcut"))
    text = forms.CharField(max_length=4096, widget=forms.Textarea(attrs={"rows": 3}), label=_("Text"))
