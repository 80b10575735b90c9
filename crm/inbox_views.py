"""The agent inbox: chat list, conversation, composer and the actions on a chat.

Pages render on the server. The page's script (static/js/inbox.js) posts the same forms with
`X-Requested-With: fetch` and gets JSON back (the one error shape on failure), and asks for single
rows (a chat's list row, a message) by id when a live event arrives, so every pixel of a row comes
from these templates. Everything is scoped to the member's current organization: another
organization's ids answer 404, never 403, so nobody can probe for them.
"""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from config.db_router import replica_reads
from crm import selectors as crm_selectors
from crm.inbox_forms import (
    VIEW_CHOICES,
    ChatFiltersForm,
    ContactForm,
    MessageComposeForm,
    NoteForm,
    QuickReplyForm,
    idempotency_key_new,
)
from crm.models import Chat, Membership
from messaging.api.errors import error_body
from messaging.selectors import (
    ChatFilters,
    CursorError,
    chat_history_page,
    chat_matches,
    inbox_chat,
    inbox_chat_page,
    inbox_message,
    quota_left,
)
from messaging.services.chats import ChatActionError, chat_assign, chat_mark_read, chat_status_set
from messaging.services.contacts import contact_update, labels_parse
from messaging.services.notes import chat_note_add
from messaging.services.outbound import (
    IdempotencyKeyReusedError,
    MessageStateError,
    QuotaExceededError,
    message_retry,
    message_send,
    quota_resets_at,
)
from messaging.services.quick_replies import quick_reply_create, quick_reply_delete

NOTES_SHOWN = 20


# --- helpers ----------------------------------------------------------------------------------------
def _membership(request: HttpRequest) -> Membership:
    membership = getattr(request, "membership", None)
    if membership is None:
        raise Http404("You are not a member of any organization.")
    return membership


def _chat(membership: Membership, chat_id: int) -> Chat:
    chat = inbox_chat(membership=membership, chat_id=chat_id)
    if chat is None:
        raise Http404("No such chat.")
    return chat


def _wants_json(request: HttpRequest) -> bool:
    return request.headers.get("X-Requested-With") == "fetch"


def _error(status: int, code: str, message: str, details: dict | None = None) -> JsonResponse:
    return JsonResponse(error_body(code=code, message=message, details=details), status=status)


def _form_error(form) -> JsonResponse:
    errors = {field: [str(error) for error in messages] for field, messages in form.errors.items()}
    first = next(iter(errors.values()))[0]
    return _error(400, "invalid", first, {"fields": errors})


def _validation_details(error: ValidationError) -> dict:
    if hasattr(error, "error_dict"):
        return {field: [str(message) for message in messages] for field, messages in error.message_dict.items()}
    return {"__all__": [str(message) for message in error.messages]}


def _filters(request: HttpRequest) -> tuple[ChatFilters, str | None]:
    """Return the list filters and page cursor of the query string. Raise ValidationError when bad."""
    form = ChatFiltersForm(request.GET)
    if not form.is_valid():
        raise ValidationError(form.errors)
    data = form.cleaned_data
    filters = ChatFilters(
        status=data["status"] or Chat.Status.OPEN,
        view=data["view"] or "all",
        number_id=data["number"],
        search=(data["q"] or "").strip(),
    )
    return filters, data["after"] or None


def _bad_filters(error: ValidationError) -> HttpResponse:
    return _error(400, "invalid_parameter", _("Unknown filter value."), _validation_details(error))


def _quota(organization) -> dict:
    left = quota_left(organization=organization)
    return {
        "left": left,
        "limit": organization.plan.messages_per_day,
        "resets_at": quota_resets_at(timezone.now()),
        "is_exceeded": left == 0,
    }


def _list_context(request: HttpRequest, membership: Membership, filters: ChatFilters, after: str | None) -> dict:
    chats, next_cursor = inbox_chat_page(membership=membership, filters=filters, after=after)
    query = request.GET.copy()
    query.pop("after", None)
    return {
        "chats": chats,
        "next_cursor": next_cursor,
        "filters": filters,
        "filter_query": query.urlencode(),
        "status_tabs": _tabs(query, "status", Chat.Status.choices),
        "view_tabs": _tabs(query, "view", VIEW_CHOICES),
    }


def _tabs(query, key: str, choices) -> list[tuple[str, str, str]]:
    """(value, label, query string) for each tab: the current query with `key` set to the value."""
    tabs = []
    for value, label in choices:
        tab_query = query.copy()
        tab_query[key] = value
        tabs.append((value, label, tab_query.urlencode()))
    return tabs


def _inbox_strings() -> dict:
    """What the page's script says, translated on the server (no JavaScript catalog to load)."""
    return {
        "reconnecting": _("Reconnecting…"),
        "sendFailed": _("The message could not be sent. Try again."),
        "attached": _("Attached:"),
        "remove": _("Remove"),
    }


def _inbox_render(request, membership, *, chat=None, compose_form=None, contact_form=None, status=200):
    try:
        filters, after = _filters(request)
        context = _list_context(request, membership, filters, after)
    except (ValidationError, CursorError) as error:
        if isinstance(error, CursorError):
            error = ValidationError({"after": [str(error)]})
        return _bad_filters(error)
    organization = membership.organization
    context.update(
        {
            "membership": membership,
            "numbers": crm_selectors.numbers_of_organization(organization_id=organization.pk),
            # Read by the middleware at the start of the request, before the list and chat above:
            # the page's script asks for everything after it, so no event in between is missed.
            "event_cursor": organization.event_sequence,
            "chat": chat,
            "inbox_strings": _inbox_strings(),
            "ping_seconds": settings.WEBSOCKET_PING_SECONDS,
        }
    )
    if chat is not None:
        history, older_cursor = chat_history_page(chat=chat)
        context.update(
            {
                # Not "messages": that name is django.contrib.messages' flashes in base.html.
                "history": history,
                "older_cursor": older_cursor,
                "notes": crm_selectors.chat_notes_recent(chat=chat, limit=NOTES_SHOWN),
                "members": crm_selectors.members_of_organization(organization_id=organization.pk),
                "quick_replies": crm_selectors.quick_replies_for_composer(organization_id=organization.pk),
                "quota": _quota(organization),
                "compose_form": compose_form or MessageComposeForm(initial={"idempotency_key": idempotency_key_new()}),
                "contact_form": contact_form or _contact_form_initial(chat.contact),
                "note_form": NoteForm(),
            }
        )
    return render(request, "crm/inbox/inbox.html", context, status=status)


def _contact_form_initial(contact) -> ContactForm:
    return ContactForm(
        initial={
            "name": contact.name,
            "phone": contact.phone,
            "labels": ", ".join(contact.labels or []),
            "notes": contact.notes,
        }
    )


def _back_to_chat(chat: Chat) -> HttpResponse:
    return redirect("crm:chat-detail", chat_id=chat.pk)


def _chat_done(request: HttpRequest, chat: Chat) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse({"chat": chat.pk, "status": chat.status, "assignee": chat.assignee_id})
    return _back_to_chat(chat)


# --- pages ------------------------------------------------------------------------------------------
@login_required
@require_GET
@replica_reads
def inbox(request: HttpRequest) -> HttpResponse:
    return _inbox_render(request, _membership(request))


@login_required
@require_GET
def chat_detail(request: HttpRequest, chat_id: int) -> HttpResponse:
    """The inbox with one conversation open; opening it marks it read."""
    membership = _membership(request)
    chat = _chat(membership, chat_id)
    if chat.unread_count:
        chat.unread_count = chat_mark_read(chat=chat).unread_count
    return _inbox_render(request, membership, chat=chat)


# --- fragments the page's script asks for ------------------------------------------------------------
@login_required
@require_GET
@replica_reads
def chat_rows(request: HttpRequest) -> HttpResponse:
    """The next page of the chat list (rows only), after `after`."""
    membership = _membership(request)
    try:
        filters, after = _filters(request)
        context = _list_context(request, membership, filters, after)
    except ValidationError as error:
        return _bad_filters(error)
    except CursorError as error:
        return _error(400, "invalid_parameter", str(error), {"after": request.GET.get("after")})
    return render(request, "crm/inbox/_chat_rows.html", context)


@login_required
@require_GET
def chat_row(request: HttpRequest, chat_id: int) -> HttpResponse:
    """One chat's list row under the page's filters; 204 when the chat no longer belongs in that list."""
    membership = _membership(request)
    _chat(membership, chat_id)
    try:
        filters, _after = _filters(request)
    except ValidationError as error:
        return _bad_filters(error)
    chat = chat_matches(membership=membership, filters=filters, chat_id=chat_id)
    if chat is None:
        return HttpResponse(status=204)
    return render(request, "crm/inbox/_chat_row.html", {"row": chat, "filter_query": request.GET.urlencode()})


@login_required
@require_GET
@replica_reads
def chat_messages(request: HttpRequest, chat_id: int) -> HttpResponse:
    """Older history of a chat (before the cursor `before`), for scrolling up."""
    chat = _chat(_membership(request), chat_id)
    try:
        history, older_cursor = chat_history_page(chat=chat, before=request.GET.get("before") or None)
    except CursorError as error:
        return _error(400, "invalid_parameter", str(error), {"before": request.GET.get("before")})
    return render(request, "crm/inbox/_messages.html", {"history": history, "older_cursor": older_cursor})


@login_required
@require_GET
def message_row(request: HttpRequest, message_id: int) -> HttpResponse:
    """One message as the conversation shows it (a live event names it by id)."""
    message = inbox_message(membership=_membership(request), message_id=message_id)
    if message is None:
        raise Http404("No such message.")
    return render(request, "crm/inbox/_message.html", {"message": message, "with_day": True})


# --- actions ----------------------------------------------------------------------------------------
@login_required
@require_POST
def message_send_view(request: HttpRequest, chat_id: int) -> HttpResponse:
    """Send the composer's text or attachment; the form's idempotency key makes a double submit send once."""
    membership = _membership(request)
    chat = _chat(membership, chat_id)
    form = MessageComposeForm(request.POST, request.FILES)
    if not form.is_valid():
        if _wants_json(request):
            return _form_error(form)
        return _inbox_render(request, membership, chat=chat, compose_form=form, status=400)
    try:
        message, created = message_send(
            organization=chat.organization,
            chat=chat,
            sent_by=request.user,
            text=form.cleaned_data["text"],
            media=form.cleaned_data["file"],
            idempotency_key=form.cleaned_data["idempotency_key"],
        )
    except QuotaExceededError as error:
        reason = _("Today's limit of %(limit)s messages is used up; sending resumes at %(time)s UTC.") % {
            "limit": error.limit,
            "time": error.resets_at.strftime("%Y-%m-%d %H:%M"),
        }
        if _wants_json(request):
            return _error(429, "quota_exceeded", reason, {"resets_at": error.resets_at.isoformat()})
        form.add_error(None, reason)
        return _inbox_render(request, membership, chat=chat, compose_form=form, status=429)
    except IdempotencyKeyReusedError:
        message_text = _("This form was already used for another message; reload the page.")
        if _wants_json(request):
            return _error(422, "idempotency_key_reused", message_text)
        form.add_error(None, message_text)
        return _inbox_render(request, membership, chat=chat, compose_form=form, status=422)
    if _wants_json(request):
        html = render_to_string("crm/inbox/_message.html", {"message": message, "with_day": True}, request=request)
        return JsonResponse(
            {"message": message.pk, "created": created, "html": html, "idempotency_key": idempotency_key_new()},
            status=201 if created else 200,
        )
    return _back_to_chat(chat)


@login_required
@require_POST
def message_retry_view(request: HttpRequest, message_id: int) -> HttpResponse:
    membership = _membership(request)
    message = inbox_message(membership=membership, message_id=message_id)
    if message is None:
        raise Http404("No such message.")
    try:
        message = message_retry(message=message)
    except MessageStateError:
        if _wants_json(request):
            return _error(409, "invalid_state", _("Only failed messages can be sent again."))
        return redirect("crm:chat-detail", chat_id=message.chat_id)
    if _wants_json(request):
        html = render_to_string("crm/inbox/_message.html", {"message": message}, request=request)
        return JsonResponse({"message": message.pk, "html": html})
    return redirect("crm:chat-detail", chat_id=message.chat_id)


@login_required
@require_POST
def chat_read(request: HttpRequest, chat_id: int) -> HttpResponse:
    chat = chat_mark_read(chat=_chat(_membership(request), chat_id))
    return _chat_done(request, chat)


@login_required
@require_POST
def chat_assign_view(request: HttpRequest, chat_id: int) -> HttpResponse:
    """Give the chat to a member of its organization ("me" for oneself, empty for nobody)."""
    membership = _membership(request)
    chat = _chat(membership, chat_id)
    raw = request.POST.get("assignee", "").strip()
    assignee = None
    if raw == "me":
        assignee = membership
    elif raw:
        assignee = crm_selectors.member_of_organization(organization_id=membership.organization_id, membership_id=raw)
        if assignee is None:
            return _error(400, "invalid_assignee", _("Choose a member of this organization."), {"assignee": raw})
    try:
        chat = chat_assign(chat=chat, assignee=assignee)
    except ChatActionError as error:
        return _error(400, "invalid_assignee", str(error))
    return _chat_done(request, chat)


@login_required
@require_POST
def chat_status_view(request: HttpRequest, chat_id: int) -> HttpResponse:
    """Resolve, reopen or set a chat pending."""
    chat = _chat(_membership(request), chat_id)
    status = request.POST.get("status", "")
    try:
        chat = chat_status_set(chat=chat, status=status)
    except ChatActionError:
        return _error(
            400,
            "invalid_status",
            _("Unknown status; use open, pending or resolved."),
            {"status": status, "allowed": Chat.Status.values},
        )
    return _chat_done(request, chat)


@login_required
@require_POST
def chat_note_add_view(request: HttpRequest, chat_id: int) -> HttpResponse:
    """Leave a private note on the chat: it is stored for the team and never sent."""
    chat = _chat(_membership(request), chat_id)
    form = NoteForm(request.POST)
    if not form.is_valid():
        return _form_error(form)
    try:
        note = chat_note_add(chat=chat, author=request.user, text=form.cleaned_data["text"])
    except ValidationError as error:
        return _error(400, "invalid", error.messages[0], _validation_details(error))
    if _wants_json(request):
        html = render_to_string("crm/inbox/_note.html", {"note": note}, request=request)
        return JsonResponse({"note": note.pk, "html": html}, status=201)
    return _back_to_chat(chat)


@login_required
@require_POST
def contact_update_view(request: HttpRequest, contact_id: int) -> HttpResponse:
    """Save the contact panel (name, phone, labels, notes); the page returns to `chat` when given."""
    membership = _membership(request)
    contact = crm_selectors.contact_of_organization(organization_id=membership.organization_id, contact_id=contact_id)
    if contact is None:
        raise Http404("No such contact.")
    form = ContactForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            contact = contact_update(
                contact=contact,
                name=data["name"],
                phone=data["phone"],
                labels=labels_parse(data["labels"]),
                notes=data["notes"],
            )
        except ValidationError as error:
            for field, messages in _validation_details(error).items():
                for message in messages:
                    # labels_parse raises without a field: its errors are the labels field's.
                    form.add_error(field if field in form.fields else "labels", message)
    if form.errors:
        if _wants_json(request):
            return _form_error(form)
        chat = _chat_for_contact_page(request, membership)
        if chat is None:
            return _form_error(form)
        return _inbox_render(request, membership, chat=chat, contact_form=form, status=400)
    if _wants_json(request):
        return JsonResponse({"contact": contact.pk, "name": str(contact), "phone": contact.phone})
    chat = _chat_for_contact_page(request, membership)
    return _back_to_chat(chat) if chat else redirect("crm:inbox")


def _chat_for_contact_page(request: HttpRequest, membership: Membership) -> Chat | None:
    try:
        return inbox_chat(membership=membership, chat_id=int(request.POST.get("chat", "")))
    except ValueError:
        return None


@login_required
def quick_replies(request: HttpRequest) -> HttpResponse:
    """The organization's quick replies: list them and add one."""
    membership = _membership(request)
    form = QuickReplyForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                quick_reply_create(
                    organization=membership.organization,
                    shortcut=form.cleaned_data["shortcut"],
                    text=form.cleaned_data["text"],
                )
            except ValidationError as error:
                for field, messages in error.message_dict.items():
                    for message in messages:
                        form.add_error(field, message)
            else:
                return redirect("crm:quick-replies")
        status = 400
    replies = crm_selectors.quick_replies_of_organization(organization_id=membership.organization_id)
    return render(request, "crm/inbox/quick_replies.html", {"form": form, "quick_replies": replies}, status=status)


@login_required
@require_POST
def quick_reply_delete_view(request: HttpRequest, quick_reply_id: int) -> HttpResponse:
    membership = _membership(request)
    reply = crm_selectors.quick_replies_of_organization(organization_id=membership.organization_id).filter(
        pk=quick_reply_id
    )
    reply = reply.first()
    if reply is None:
        raise Http404("No such quick reply.")
    quick_reply_delete(quick_reply=reply)
    return redirect(reverse("crm:quick-replies"))
