"""API of chats: list with filters, get, assign, resolve, reopen, mark read (messaging.services.chats)."""

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers
from rest_framework.response import Response

from crm.models import Chat, Membership
from messaging.api.base import OrganizationApi, iso, query_validated
from messaging.api.errors import ApiError
from messaging.api.pagination import CURSOR_PARAMETER, LIMIT_PARAMETER, LimitSerializer, id_page, page_serializer
from messaging.api.schema import api_doc
from messaging.services.chats import ChatActionError, chat_assign, chat_mark_read, chat_status_set


# --- shapes ------------------------------------------------------------------------------------------
class ChatContactOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    phone = serializers.CharField()


class ChatOut(serializers.Serializer):
    id = serializers.IntegerField()
    number = serializers.IntegerField()
    contact = ChatContactOut()
    status = serializers.ChoiceField(choices=Chat.Status.choices)
    assignee = serializers.IntegerField(allow_null=True, help_text="The assignee's membership id.")
    unread_count = serializers.IntegerField()
    last_message_at = serializers.DateTimeField(allow_null=True)
    last_message_preview = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


ChatPageOut = page_serializer(ChatOut, "ChatPage")


class ChatListQuery(LimitSerializer):
    cursor = serializers.CharField(required=False)
    number = serializers.IntegerField(required=False, min_value=1)
    status = serializers.ChoiceField(choices=Chat.Status.choices, required=False)
    assignee = serializers.RegexField(r"^(none|[1-9]\d{0,17})$", required=False)
    unread = serializers.BooleanField(required=False, allow_null=True, default=None)
    updated_since = serializers.DateTimeField(required=False)


class ChatAssignIn(serializers.Serializer):
    assignee = serializers.IntegerField(
        allow_null=True, min_value=1, help_text="A membership id of the organization, or null to unassign."
    )


def chat_output(chat: Chat) -> dict:
    contact = chat.contact
    return {
        "id": chat.pk,
        "number": chat.number_id,
        "contact": {"id": contact.pk, "name": contact.name, "phone": contact.phone},
        "status": chat.status,
        "assignee": chat.assignee_id,
        "unread_count": chat.unread_count,
        "last_message_at": iso(chat.last_message_at),
        "last_message_preview": chat.last_message_preview,
        "created_at": iso(chat.created_at),
        "updated_at": iso(chat.updated_at),
    }


def chat_of_request(view: OrganizationApi, chat_id: int) -> Chat:
    return get_object_or_404(
        Chat.objects.select_related("contact", "organization__plan"), pk=chat_id, organization_id=view.organization_id()
    )


def _chat_action_failed(error: ChatActionError) -> ApiError:
    return ApiError(status_code=400, code="invalid_action", message=str(error))


# --- views -------------------------------------------------------------------------------------------
class ChatListApi(OrganizationApi):
    @api_doc(
        summary="List chats, newest first",
        responses={200: ChatPageOut},
        parameters=[
            LIMIT_PARAMETER,
            CURSOR_PARAMETER,
            OpenApiParameter("number", OpenApiTypes.INT, description="Only the chats of this number."),
            OpenApiParameter("status", OpenApiTypes.STR, enum=Chat.Status.values),
            OpenApiParameter("assignee", OpenApiTypes.STR, description="A membership id, or `none` for unassigned."),
            OpenApiParameter("unread", OpenApiTypes.BOOL, description="true: only unread; false: only read."),
            OpenApiParameter("updated_since", OpenApiTypes.DATETIME, description="Only chats changed since then."),
        ],
    )
    def get(self, request):
        query = query_validated(ChatListQuery, request)
        chats = Chat.objects.filter(organization_id=self.organization_id()).select_related("contact")
        if "number" in query:
            chats = chats.filter(number_id=query["number"])
        if "status" in query:
            chats = chats.filter(status=query["status"])
        if "assignee" in query:
            assignee = query["assignee"]
            chats = chats.filter(assignee__isnull=True) if assignee == "none" else chats.filter(assignee_id=assignee)
        if query["unread"] is not None:
            chats = chats.filter(unread_count__gt=0) if query["unread"] else chats.filter(unread_count=0)
        if "updated_since" in query:
            chats = chats.filter(updated_at__gte=query["updated_since"])
        rows, next_cursor = id_page(chats, cursor=query.get("cursor"), limit=query["limit"])
        return Response({"results": [chat_output(chat) for chat in rows], "next": next_cursor})


class ChatDetailApi(OrganizationApi):
    @api_doc(summary="Get a chat", responses={200: ChatOut})
    def get(self, request, chat_id: int):
        return Response(chat_output(chat_of_request(self, chat_id)))


class ChatAssignApi(OrganizationApi):
    @api_doc(summary="Assign the chat to a member, or unassign it", request=ChatAssignIn, responses={200: ChatOut})
    def post(self, request, chat_id: int):
        chat = chat_of_request(self, chat_id)
        data = ChatAssignIn(data=request.data)
        data.is_valid(raise_exception=True)
        assignee = None
        if data.validated_data["assignee"] is not None:
            assignee = Membership.objects.filter(
                pk=data.validated_data["assignee"], organization_id=chat.organization_id
            ).first()
            if assignee is None:
                raise ApiError(
                    status_code=400,
                    code="invalid",
                    message="The request is not valid.",
                    details={"fields": {"assignee": ["No such member in this organization."]}},
                )
        try:
            chat = chat_assign(chat=chat, assignee=assignee)
        except ChatActionError as error:
            raise _chat_action_failed(error) from error
        return Response(chat_output(chat))


class ChatResolveApi(OrganizationApi):
    @api_doc(summary="Resolve the chat (also clears its unread count)", request=None, responses={200: ChatOut})
    def post(self, request, chat_id: int):
        chat = chat_status_set(chat=chat_of_request(self, chat_id), status=Chat.Status.RESOLVED)
        return Response(chat_output(chat))


class ChatReopenApi(OrganizationApi):
    @api_doc(summary="Reopen the chat", request=None, responses={200: ChatOut})
    def post(self, request, chat_id: int):
        chat = chat_status_set(chat=chat_of_request(self, chat_id), status=Chat.Status.OPEN)
        return Response(chat_output(chat))


class ChatMarkReadApi(OrganizationApi):
    @api_doc(summary="Mark the chat read (unread count to zero)", request=None, responses={200: ChatOut})
    def post(self, request, chat_id: int):
        return Response(chat_output(chat_mark_read(chat=chat_of_request(self, chat_id))))
