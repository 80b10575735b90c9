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


@transaction.atomic
def contact_update(*, contact: Contact, name: str, phone: str, labels: list[str], notes: str) -> Contact:
    """Save what an agent knows about the contact; the phone is stored in E.164.

    A changed phone is also recorded as one of the contact's WhatsApp ids, so the next message
    from it lands in the same chat. Raise ValidationError (by field) for a phone that is not
    international or that another contact of the organization already has.
    """
    errors: dict[str, str] = {}
    phone = (phone or "").strip()
    if phone:
        try:
            phone = phone_normalize(phone)
        except ValidationError:
            errors["phone"] = _("Enter a phone number in international format, such as +5511912345678.")
    if "phone" not in errors and phone and phone != contact.phone:
        owner = (
            ContactIdentity.objects.filter(
                organization_id=contact.organization_id, kind=IdentityKind.PHONE, value=phone
            )
            .exclude(contact_id=contact.pk)
            .exists()
        )
        if owner:
            errors["phone"] = _("Another contact already has this phone number.")
    if errors:
        raise ValidationError(errors)
    contact = Contact.objects.select_for_update().get(pk=contact.pk)
    contact.name = (name or "").strip()[:200]
    contact.phone = phone
    contact.labels = labels
    contact.notes = (notes or "").strip()
    contact.save(update_fields=["name", "phone", "labels", "notes"])
    if phone:
        ContactIdentity.objects.get_or_create(
            organization_id=contact.organization_id, kind=IdentityKind.PHONE, value=phone, defaults={"contact": contact}
        )
    return contact
