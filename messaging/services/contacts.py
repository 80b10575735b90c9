"""What agents change about a contact from the inbox's contact panel."""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from crm.models import Contact, ContactIdentity
from crm.phones import IdentityKind, phone_normalize

MAX_LABELS = 20
MAX_LABEL_CHARS = 32


def labels_parse(raw: str) -> list[str]:
    """Return the labels of a comma-separated text: trimmed, lower-cased, once each, in order.

    Raise ValidationError for too many or too long labels.
    """
    labels: list[str] = []
    for part in (raw or "").split(","):
        label = " ".join(part.split()).lower()
        if label and label not in labels:
            labels.append(label)
    if len(labels) > MAX_LABELS:
        raise ValidationError(_("Use at most %(limit)s labels.") % {"limit": MAX_LABELS}, code="too_many_labels")
    too_long = [label for label in labels if len(label) > MAX_LABEL_CHARS]
    if too_long:
        raise ValidationError(
            _("A label has at most %(limit)s characters.") % {"limit": MAX_LABEL_CHARS}, code="label_too_long"
        )
    return labels


PHONE_TAKEN = "phone_taken"  # the ValidationError code when another contact has the phone


@transaction.atomic
def contact_update(
    *,
    contact: Contact,
    name: str | None = None,
    phone: str | None = None,
    labels: list[str] | None = None,
    notes: str | None = None,
) -> Contact:
    """Change what is given about the contact (None leaves a field as it is); one writer for the
    inbox's contact panel and the API.

    A phone is stored in E.164, and a changed one is also recorded as one of the contact's
    WhatsApp ids, so the next message from it lands in the same chat. Raise ValidationError (by
    field) for a phone that is not international, or that another contact of the organization
    already has (code PHONE_TAKEN); nothing is saved then.
    """
    if phone is not None:
        phone = _phone_checked(contact, phone)
    contact = Contact.objects.select_for_update().get(pk=contact.pk)
    changes = {
        "name": None if name is None else name.strip()[:200],
        "phone": phone,
        "labels": labels,
        "notes": None if notes is None else notes.strip(),
    }
    fields = [field for field, value in changes.items() if value is not None]
    for field in fields:
        setattr(contact, field, changes[field])
    if fields:
        contact.save(update_fields=fields)
    if phone:
        ContactIdentity.objects.get_or_create(
            organization_id=contact.organization_id, kind=IdentityKind.PHONE, value=phone, defaults={"contact": contact}
        )
    return contact


def _phone_checked(contact: Contact, phone: str) -> str:
    """Return the phone in E.164 ("" to clear it). Raise ValidationError({"phone": ...}) when unusable."""
    phone = phone.strip()
    if not phone:
        return ""
    try:
        phone = phone_normalize(phone)
    except ValidationError as error:
        message = _("Enter a phone number in international format, such as +5511912345678.")
        raise ValidationError({"phone": message}) from error
    taken = (
        ContactIdentity.objects.filter(organization_id=contact.organization_id, kind=IdentityKind.PHONE, value=phone)
        .exclude(contact_id=contact.pk)
        .exists()
    )
    if taken:
        raise ValidationError(
            {"phone": ValidationError(_("Another contact already has this phone number."), code=PHONE_TAKEN)}
        )
    return phone
