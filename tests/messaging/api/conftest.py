"""Fixtures of the API tests: an organization with an API key, and a client that sends it."""

from dataclasses import dataclass

import pytest
from rest_framework.test import APIClient

from crm.models import ApiKey, Organization
from crm.services import api_key_create
from tests.factories import ChatFactory, MembershipFactory, MessageFactory, OrganizationFactory


@dataclass
class KeyedOrganization:
    organization: Organization
    api_key: ApiKey
    secret: str
    client: APIClient


def keyed_organization(**organization_fields) -> KeyedOrganization:
    organization = OrganizationFactory(**organization_fields)
    api_key, secret = api_key_create(organization=organization, name="integration")
    return KeyedOrganization(organization, api_key, secret, bearer_client(secret))


def bearer_client(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def key_client(organization: Organization) -> APIClient:
    """A client with a new API key of `organization`."""
    return bearer_client(api_key_create(organization=organization, name="test")[1])


@pytest.fixture
def org_a(db) -> KeyedOrganization:
    return keyed_organization(name="Alpha Dental")


@pytest.fixture
def org_b(db) -> KeyedOrganization:
    return keyed_organization(name="Bravo Motors")


@pytest.fixture
def api(org_a) -> APIClient:
    """A client of organization A, authenticated with A's API key."""
    return org_a.client


@pytest.fixture
def chat_a(org_a):
    chat = ChatFactory(organization=org_a.organization)
    MessageFactory(chat=chat, text="Hello from the contact")
    return chat


@pytest.fixture
def member_a(org_a):
    return MembershipFactory(organization=org_a.organization)


def assert_error_shape(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]
