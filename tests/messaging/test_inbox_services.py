"""The inbox's own writes: the contact panel, private notes and quick replies."""

import pytest
from django.core.exceptions import ValidationError

from crm.models import ChatNote, ContactIdentity, QuickReply
from messaging.models import Event, Message
from messaging.services.contacts import MAX_LABELS, contact_update, labels_parse
from messaging.services.notes import MAX_NOTE_CHARS, chat_note_add
from messaging.services.quick_replies import quick_reply_create
from tests.factories import ChatFactory, ContactFactory, ContactIdentityFactory, OrganizationFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("raw", "labels"),
    [("", []), ("VIP", ["vip"]), (" vip ,  Lead, vip,, ", ["vip", "lead"]), ("new   client", ["new client"])],
)
def test_labels_are_trimmed_lower_cased_and_unique(raw, labels):
    assert labels_parse(raw) == labels


def test_too_many_or_too_long_labels_are_refused():
    with pytest.raises(ValidationError):
        labels_parse(",".join(f"label{index}" for index in range(MAX_LABELS + 1)))
    with pytest.raises(ValidationError):
        labels_parse("x" * 33)


def test_contact_update_stores_e164_and_records_the_new_phone_as_an_identity():
    contact = ContactIdentityFactory().contact
    contact = contact_update(contact=contact, name=" Ana ", phone="0055 21 98765-4321", labels=["vip"], notes=" hi ")
    assert (contact.name, contact.phone, contact.labels, contact.notes) == ("Ana", "+5521987654321", ["vip"], "hi")
    assert set(contact.identities.values_list("value", flat=True)) >= {"+5521987654321"}


def test_contact_update_refuses_a_phone_another_contact_has_and_changes_nothing():
    mine = ContactIdentityFactory().contact
    theirs = ContactIdentityFactory(contact__organization=mine.organization).contact
    with pytest.raises(ValidationError) as error:
        contact_update(contact=mine, name="Changed", phone=theirs.phone, labels=[], notes="")
    assert "phone" in error.value.message_dict
    mine.refresh_from_db()
    assert mine.name != "Changed"


def test_the_same_phone_in_another_organization_is_fine():
    elsewhere = ContactIdentityFactory().contact
    contact = ContactFactory(phone="")
    contact = contact_update(contact=contact, name="", phone=elsewhere.phone, labels=[], notes="")
    assert contact.phone == elsewhere.phone
    assert ContactIdentity.objects.filter(value=elsewhere.phone).count() == 2


def test_clearing_the_phone_is_allowed():
    contact = ContactFactory()
    assert contact_update(contact=contact, name="x", phone="", labels=[], notes="").phone == ""


def test_note_is_stored_and_nothing_is_queued_or_pushed():
    chat = ChatFactory()
    note = chat_note_add(chat=chat, author=None, text="  Call back after 3pm  ")
    assert note.text == "Call back after 3pm"
    assert note.organization_id == chat.organization_id
    assert not Message.objects.exists()
    assert not Event.objects.exists()


@pytest.mark.parametrize("text", ["", "  \n ", "x" * (MAX_NOTE_CHARS + 1)])
def test_empty_or_long_notes_are_refused(text):
    with pytest.raises(ValidationError):
        chat_note_add(chat=ChatFactory(), author=None, text=text)
    assert not ChatNote.objects.exists()


def test_quick_reply_shortcut_is_unique_per_organization_only():
    organization, other = OrganizationFactory(), OrganizationFactory()
    quick_reply_create(organization=organization, shortcut="/Hours", text="9 to 18")
    quick_reply_create(organization=other, shortcut="hours", text="10 to 16")
    with pytest.raises(ValidationError) as error:
        quick_reply_create(organization=organization, shortcut="hours", text="again")
    assert "already exists" in error.value.message_dict["shortcut"][0]
    assert QuickReply.objects.count() == 2


@pytest.mark.parametrize("shortcut", ["", "two words", "x" * 33, "ação"])
def test_bad_shortcuts_are_refused(shortcut):
    with pytest.raises(ValidationError):
        quick_reply_create(organization=OrganizationFactory(), shortcut=shortcut, text="text")
