"""API of contacts: list and search, get, update (crm.selectors, messaging.services.contacts.contact_update)."""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers
from rest_framework.response import Response

from crm.models import Contact
from crm.selectors import contacts_of_organization
from messaging.api.base import OrganizationApi, iso, query_validated
from messaging.api.errors import ApiError
from messaging.api.pagination import CURSOR_PARAMETER, LIMIT_PARAMETER, LimitSerializer, id_page, page_serializer
from messaging.api.schema import api_doc
from messaging.services.contacts import PHONE_TAKEN, contact_update


class ContactOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    phone = serializers.CharField(help_text="E.164, or empty when only a WhatsApp LID is known.")
    whatsapp_ids = serializers.ListField(child=serializers.CharField(), help_text="Phones and `<digits>@lid` ids.")
    created_at = serializers.DateTimeField()


ContactPageOut = page_serializer(ContactOut, "ContactPage")


class ContactListQuery(LimitSerializer):
    cursor = serializers.CharField(required=False)
    search = serializers.CharField(required=False, allow_blank=True, max_length=100)


class ContactUpdateIn(serializers.Serializer):
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    phone = serializers.CharField(
        required=False, allow_blank=True, max_length=32, help_text="International format; empty clears it."
    )


def contact_output(contact: Contact) -> dict:
    return {
        "id": contact.pk,
        "name": contact.name,
        "phone": contact.phone,
        "whatsapp_ids": [identity.value for identity in contact.identities.all()],
        "created_at": iso(contact.created_at),
    }


def _contact_of_request(view: OrganizationApi, contact_id: int) -> Contact:
    contacts = Contact.objects.prefetch_related("identities")
    return get_object_or_404(contacts, pk=contact_id, organization_id=view.organization_id())


class ContactListApi(OrganizationApi):
    @api_doc(
        summary="List or search contacts",
        responses={200: ContactPageOut},
        parameters=[
            LIMIT_PARAMETER,
            CURSOR_PARAMETER,
            OpenApiParameter("search", OpenApiTypes.STR, description="A part of the name or of the phone."),
        ],
    )
    def get(self, request):
        query = query_validated(ContactListQuery, request)
        contacts = contacts_of_organization(organization_id=self.organization_id(), search=query.get("search", ""))
        rows, next_cursor = id_page(
            contacts.prefetch_related("identities"), cursor=query.get("cursor"), limit=query["limit"], descending=False
        )
        return Response({"results": [contact_output(contact) for contact in rows], "next": next_cursor})


class ContactDetailApi(OrganizationApi):
    @api_doc(summary="Get a contact", responses={200: ContactOut})
    def get(self, request, contact_id: int):
        return Response(contact_output(_contact_of_request(self, contact_id)))

    @api_doc(
        summary="Change a contact's name or phone",
        request=ContactUpdateIn,
        responses={200: ContactOut},
        errors={409: "Another contact has this phone (`phone_taken`)."},
    )
    def patch(self, request, contact_id: int):
        contact = _contact_of_request(self, contact_id)
        data = ContactUpdateIn(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            contact = contact_update(contact=contact, **data.validated_data)
        except DjangoValidationError as error:
            phone_errors = error.error_dict.get("phone", [])
            if any(item.code == PHONE_TAKEN for item in phone_errors):
                raise ApiError(status_code=409, code="phone_taken", message=phone_errors[0].messages[0]) from error
            raise ApiError(
                status_code=400,
                code="invalid",
                message="The request is not valid.",
                details={
                    "fields": {
                        field: [m for e in errors for m in e.messages] for field, errors in error.error_dict.items()
                    }
                },
            ) from error
        return Response(contact_output(_contact_of_request(self, contact.pk)))
