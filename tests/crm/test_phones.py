import pytest
from django.core.exceptions import ValidationError

from crm.phones import IdentityKind, phone_normalize, wa_id_parse


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+55 11 91234-5678", "+5511912345678"),
        ("5511912345678@s.whatsapp.net", "+5511912345678"),
        ("5511912345678@c.us", "+5511912345678"),
        ("5511912345678:12@s.whatsapp.net", "+5511912345678"),
        ("whatsapp:+14155550123", "+14155550123"),
        ("0014155550123", "+14155550123"),
        ("(415) 555-0123".replace("(", "+1 ("), "+14155550123"),
    ],
)
def test_phone_spellings_of_providers_normalize_to_e164(raw, expected):
    assert phone_normalize(raw) == expected


def test_brazilian_mobile_without_ninth_digit_gets_it():
    assert phone_normalize("551191234567") == "+5511991234567"


def test_brazilian_landline_keeps_eight_digits():
    assert phone_normalize("+551132345678") == "+551132345678"


@pytest.mark.parametrize("raw", ["", "hello", "+12", "+0123456789", "12345678901234567", "<script>"])
def test_implausible_phone_is_rejected(raw):
    with pytest.raises(ValidationError):
        phone_normalize(raw)


def test_every_phone_spelling_of_one_person_is_one_identity():
    spellings = ["5511912345678@s.whatsapp.net", "5511912345678@c.us", "+5511912345678", "whatsapp:+5511912345678"]
    assert {wa_id_parse(raw) for raw in spellings} == {wa_id_parse("5511912345678")}
    assert wa_id_parse("5511912345678").kind == IdentityKind.PHONE


def test_lid_is_kept_opaque():
    identity = wa_id_parse("189273645546123@lid")
    assert (identity.kind, identity.value) == (IdentityKind.LID, "189273645546123@lid")


@pytest.mark.parametrize("raw", ["120363012345678901@g.us", "status@broadcast", "123@newsletter", "abc@lid"])
def test_groups_broadcasts_and_bad_lids_are_not_a_person(raw):
    with pytest.raises(ValidationError):
        wa_id_parse(raw)
