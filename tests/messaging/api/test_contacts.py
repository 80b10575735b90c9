"""Contacts over the API: list, search, get, update (phones validated by crm.phones)."""

import pytest
from django.urls import reverse

from crm.models import Contact, ContactIdentity
from tests.factories import ContactFactory, ContactIdentityFactory
from tests.messaging.api.conftest import assert_error_shape

CONTACTS = "/api/v1/contacts/"


@pytest.fixture
def people(org_a):
    organization = org_a.organization
    ana = ContactFactory(organization=organization, name="Ana Souza", phone="+5511912345678")
    ContactIdentityFactory(contact=ana)
    bruno = ContactFactory(organization=organization, name="Bruno Lima", phone="+5521998765432")
    return ana, bruno


def test_list_and_search(api, people):
    ana, bruno = people
    assert [c["id"] for c in api.get(CONTACTS).json()["results"]] == [ana.pk, bruno.pk]
    assert [c["name"] for c in api.get(CONTACTS, {"search": "souz"}).json()["results"]] == ["Ana Souza"]
    assert [c["name"] for c in api.get(CONTACTS, {"search": "98765"}).json()["results"]] == ["Bruno Lima"]
    detail = api.get(reverse("api:contact-detail", args=[ana.pk])).json()
    assert detail["whatsapp_ids"] == ["+5511912345678"]


def test_update_normalizes_the_phone_and_adds_it_as_an_id(api, people):
    _, bruno = people
    response = api.patch(
        reverse("api:contact-detail", args=[bruno.pk]),
        {"name": "Bruno L.", "phone": "0055 21 99999-0000"},
        format="json",
    )
    assert response.status_code == 200
    assert (response.json()["name"], response.json()["phone"]) == ("Bruno L.", "+5521999990000")
    assert ContactIdentity.objects.filter(contact=bruno, value="+5521999990000").exists()


@pytest.mark.parametrize("phone", ["12", "not a phone", "+0123"])
def test_an_unreadable_phone_is_400_and_changes_nothing(api, people, phone):
    ana, _ = people
    response = api.patch(reverse("api:contact-detail", args=[ana.pk]), {"name": "X", "phone": phone}, format="json")
    assert "phone" in assert_error_shape(response, 400, "invalid")["details"]["fields"]
    assert Contact.objects.get(pk=ana.pk).name == "Ana Souza"


def test_another_contacts_phone_is_409(api, people):
    ana, bruno = people
    response = api.patch(reverse("api:contact-detail", args=[bruno.pk]), {"phone": ana.phone}, format="json")
    assert_error_shape(response, 409, "phone_taken")
    assert Contact.objects.get(pk=bruno.pk).phone == "+5521998765432"


def test_html_in_a_name_is_stored_as_text(api, people):
    ana, _ = people
    api.patch(reverse("api:contact-detail", args=[ana.pk]), {"name": "<b>Ana</b>"}, format="json")
    assert Contact.objects.get(pk=ana.pk).name == "<b>Ana</b>"  # escaped by templates when shown
