"""Phone numbers and WhatsApp ids: one canonical form, whatever spelling a provider uses.

Evolution writes `5511912345678@s.whatsapp.net`, Green API `5511912345678@c.us`, Meta bare digits,
Twilio `whatsapp:+5511912345678`; all are the same person. `@lid` ids are opaque and kept as they
are. Brazil's mobile ninth digit is sometimes missing (field notes #8); the canonical form has it.
"""

import re
from dataclasses import dataclass

from django.core.exceptions import ValidationError

E164_PATTERN = re.compile(r"^\+[1-9]\d{7,14}$")
_PHONE_SUFFIXES = ("@s.whatsapp.net", "@c.us")
_SEPARATORS = re.compile(r"[\s().\-]")


class IdentityKind:
    PHONE = "phone"
    LID = "lid"
    CHOICES = [(PHONE, "Phone (E.164)"), (LID, "WhatsApp LID")]


@dataclass(frozen=True)
class WhatsAppIdentity:
    kind: str
    value: str


def phone_normalize(raw: str) -> str:
    """Return `raw` as an E.164 phone number (`+5511912345678`).

    Raise ValidationError when it is not a plausible international number.
    """
    text = (raw or "").strip()
    if text.lower().startswith("whatsapp:"):
        text = text[len("whatsapp:") :]
    for suffix in _PHONE_SUFFIXES:
        if text.endswith(suffix):
            text = text[: -len(suffix)].split(":")[0]  # device suffix: 5511...:12@s.whatsapp.net
    text = _SEPARATORS.sub("", text)
    if text.startswith("00"):
        text = text[2:]
    digits = text.removeprefix("+")
    if not digits.isdigit():
        raise ValidationError("Enter a phone number in international format, such as +5511912345678.")
    phone = _brazil_mobile_with_ninth_digit("+" + digits)
    if not E164_PATTERN.match(phone):
        raise ValidationError("Enter a phone number in international format, such as +5511912345678.")
    return phone


def _brazil_mobile_with_ninth_digit(phone: str) -> str:
    # Brazilian mobiles gained a leading 9 (2012-2016); WhatsApp still reports some accounts with
    # the old 8-digit form. +55 DD 8 digits starting 6-9 is such a mobile: add the 9.
    if phone.startswith("+55") and len(phone) == 13 and phone[5] in "6789":
        return phone[:5] + "9" + phone[5:]
    return phone


def wa_id_parse(raw: str) -> WhatsAppIdentity:
    """Return the canonical identity for a provider's id of a person.

    Raise ValidationError for group, broadcast and other ids that are not one person.
    """
    text = (raw or "").strip()
    if text.endswith("@lid"):
        lid = text.removesuffix("@lid").split(":")[0]
        if not lid.isdigit():
            raise ValidationError(f"Not a WhatsApp LID: {raw!r}.")
        return WhatsAppIdentity(IdentityKind.LID, f"{lid}@lid")
    if "@" in text and not text.endswith(_PHONE_SUFFIXES):
        raise ValidationError(f"Not a person's WhatsApp id: {raw!r}.")
    return WhatsAppIdentity(IdentityKind.PHONE, phone_normalize(text))
