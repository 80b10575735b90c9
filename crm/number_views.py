"""Number management pages for organization admins: list, add, connect by QR, log out, delete.

Only admins of the organization the user works in now reach these pages (agents get 403); a number
of another organization is a 404, the same answer as a number that does not exist. Provider calls
never happen here: connect and log out enqueue Celery tasks, whose QR codes and states reach the
number's page live over /ws/numbers/<id>/ (static/js/numbers.js).
"""

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from crm import selectors, services
from crm.models import WhatsAppNumber
from crm.number_forms import NumberAddForm
from messaging.selectors import number_of_organization
from messaging.services.numbers import number_connect_request, number_logout_request

STATE_LABELS = {
    WhatsAppNumber.State.NOT_PROVISIONED: gettext_lazy("Not connected yet"),
    WhatsAppNumber.State.CONNECTING: gettext_lazy("Connecting"),
    WhatsAppNumber.State.WAITING_FOR_QR_SCAN: gettext_lazy("Waiting for the QR code to be scanned"),
    WhatsAppNumber.State.CONNECTED: gettext_lazy("Connected"),
    WhatsAppNumber.State.DISCONNECTED: gettext_lazy("Disconnected"),
    WhatsAppNumber.State.LOGGED_OUT: gettext_lazy("Logged out"),
    WhatsAppNumber.State.BANNED: gettext_lazy("Banned by WhatsApp"),
}


def organization_admin_required(view):
    """Let through only admins of the user's current organization; raise PermissionDenied for others."""

    @wraps(view)
    def guarded(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        membership = request.membership
        if membership is None or not membership.is_admin:
            raise PermissionDenied(_("Only admins of this organization manage its numbers."))
        return view(request, *args, **kwargs)

    return login_required(guarded)


def _number_or_404(request: HttpRequest, number_id: int) -> WhatsAppNumber:
    number = number_of_organization(organization_id=request.membership.organization_id, number_id=number_id)
    if number is None:
        raise Http404
    return number


def _state_label(number: WhatsAppNumber) -> str:
    return STATE_LABELS.get(number.state, number.state)


@organization_admin_required
@require_http_methods(["GET"])
def number_list(request: HttpRequest) -> HttpResponse:
    organization = request.membership.organization
    numbers = list(selectors.numbers_of_organization(organization_id=organization.pk))
    for number in numbers:
        number.state_label = _state_label(number)
    context = {"numbers": numbers, "limit": organization.plan.max_numbers}
    return render(request, "crm/numbers/list.html", context)


@organization_admin_required
@require_http_methods(["GET", "POST"])
def number_add(request: HttpRequest) -> HttpResponse:
    organization = request.membership.organization
    form = NumberAddForm(request.POST or None, plan=organization.plan)
    if request.method == "POST" and form.is_valid():
        try:
            number = services.number_create(
                organization=organization,
                name=form.cleaned_data["name"],
                provider=form.cleaned_data["provider"],
                credentials=form.cleaned_data["credentials"],
            )
        except services.NumberLimitReachedError as error:
            form.add_error(
                None,
                _("Your plan allows %(limit)s WhatsApp numbers; delete one before adding another.")
                % {"limit": error.limit},
            )
        else:
            messages.success(request, _("Number added. Connect it to WhatsApp below."))
            return redirect("crm:number-detail", number_id=number.pk)
    return render(request, "crm/numbers/add.html", {"form": form}, status=400 if form.errors else 200)


@organization_admin_required
@require_http_methods(["GET"])
def number_detail(request: HttpRequest, number_id: int) -> HttpResponse:
    number = _number_or_404(request, number_id)
    context = {
        "number": number,
        "state_label": _state_label(number),
        "can_log_out": number.state
        not in (WhatsAppNumber.State.NOT_PROVISIONED, WhatsAppNumber.State.LOGGED_OUT, WhatsAppNumber.State.BANNED),
        # What numbers.js needs: the rooms and endpoints, and where the event log stood at render
        # time, so a QR or state that arrives before the socket joins is caught up, not missed.
        "live": {
            "number": number.pk,
            "state": number.state,
            "socket_path": f"/ws/numbers/{number.pk}/",
            "qr_url": reverse("messaging:number-qr", args=[number.pk]),
            "events_url": reverse("messaging:events"),
            "cursor": request.membership.organization.event_sequence,
            "state_labels": {state: str(label) for state, label in STATE_LABELS.items()},
            "strings": {
                "qr_expired": _("The QR code expired. Ask for a new one."),
                "qr_waiting": _("Asking WhatsApp for a QR code…"),
                "reconnecting": _("Reconnecting…"),
                "connected": _("Connected. This number now receives and sends messages."),
                "just_now": _("just now"),
            },
        },
    }
    return render(request, "crm/numbers/detail.html", context)


def _number_provider_ask(request: HttpRequest, number_id: int, ask, notice: str) -> HttpResponse:
    """Enqueue a provider call for the number (`ask` runs after commit) and go back to its page."""
    number = _number_or_404(request, number_id)
    ask(number=number)
    messages.info(request, notice)
    return redirect("crm:number-detail", number_id=number.pk)


@organization_admin_required
@require_POST
def number_connect(request: HttpRequest, number_id: int) -> HttpResponse:
    notice = _("Asked for a QR code: it appears here in a few seconds.")
    return _number_provider_ask(request, number_id, number_connect_request, notice)


@organization_admin_required
@require_POST
def number_logout(request: HttpRequest, number_id: int) -> HttpResponse:
    return _number_provider_ask(request, number_id, number_logout_request, _("Logging out of WhatsApp…"))


@organization_admin_required
@require_http_methods(["GET", "POST"])
def number_delete(request: HttpRequest, number_id: int) -> HttpResponse:
    number = _number_or_404(request, number_id)
    if request.method == "POST":
        services.number_delete(number=number)
        messages.success(request, _("Number %(name)s deleted, with its chats and history.") % {"name": number.name})
        return redirect("crm:number-list")
    context = {"number": number, "chats": selectors.number_chat_count(number_id=number.pk)}
    return render(request, "crm/numbers/delete.html", context)
