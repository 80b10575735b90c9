"""An organization's quick replies (canned responses) that agents insert by typing "/"."""

from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from crm.models import Organization, QuickReply

MAX_SHORTCUT_CHARS = 32
MAX_TEXT_CHARS = 4096


def quick_reply_create(*, organization: Organization, shortcut: str, text: str) -> QuickReply:
    """Add a quick reply. Raise ValidationError (by field) for a bad or taken shortcut or empty text."""
    shortcut = (shortcut or "").strip().lstrip("/").lower()
    text = (text or "").strip()
    errors: dict[str, str] = {}
    try:
        validate_slug(shortcut)
        if len(shortcut) > MAX_SHORTCUT_CHARS:
            raise ValidationError("too long")
    except ValidationError:
        errors["shortcut"] = _("Use 1 to %(limit)s letters, digits, hyphens or underscores.") % {
            "limit": MAX_SHORTCUT_CHARS
        }
    if not text:
        errors["text"] = _("Write the reply's text.")
    elif len(text) > MAX_TEXT_CHARS:
        errors["text"] = _("A quick reply has at most %(limit)s characters.") % {"limit": MAX_TEXT_CHARS}
    if errors:
        raise ValidationError(errors)
    try:
        with transaction.atomic():
            return QuickReply.objects.create(organization=organization, shortcut=shortcut, text=text)
    except IntegrityError as error:
        # The unique constraint decides, also when two agents add the same shortcut at once.
        raise ValidationError({"shortcut": _("/%(shortcut)s already exists.") % {"shortcut": shortcut}}) from error


def quick_reply_delete(*, quick_reply: QuickReply) -> None:
    quick_reply.delete()
