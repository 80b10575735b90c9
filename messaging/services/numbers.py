"""Connecting and logging out a number through its provider: called by Celery tasks, never by a request.

A page or API call asks with `number_connect_request` / `number_logout_request`, which enqueue the
task after commit and return at once; the task talks to the provider and records what it said the
same way a provider webhook would (`number_qr_update`, `number_connection_update`), so the number's
page sees the QR and the state live.
"""

from django.db import transaction

from crm.models import WhatsAppNumber
from crm.selectors import number_provider_target
from crm.services import number_provision
from messaging.events import event_log_lock, number_state_event
from messaging.services.inbound import number_connection_update, number_qr_update
from providers.base import CONNECTION_STATES, ConnectionUpdate, QrUpdate
from providers.registry import adapter_for


def number_connect_request(*, number: WhatsAppNumber, phone: str = "") -> None:
    """Ask for a QR code (or a pairing code for `phone`) for the number, in the background."""
    from messaging.tasks.numbers import number_connect_task

    transaction.on_commit(lambda: number_connect_task.delay(number.pk, phone))


def number_logout_request(*, number: WhatsAppNumber) -> None:
    """Log the number's WhatsApp account out of its provider, in the background."""
    from messaging.tasks.numbers import number_logout_task

    transaction.on_commit(lambda: number_logout_task.delay(number.pk))


def number_connect(*, number_id: int, phone: str = "") -> WhatsAppNumber | None:
    """Provision the number if needed, start a connection, and record the QR or the state it gives.

    Return None when the number was deleted meanwhile. Raise ProviderError when the provider fails.
    """
    if not WhatsAppNumber.objects.filter(pk=number_id).exists():
        return None
    number = number_provision(number_id=number_id)
    result = adapter_for(number.provider).connect(number_provider_target(number), phone=phone)
    with transaction.atomic():
        event_log_lock(number.organization_id)
        number = WhatsAppNumber.objects.filter(pk=number_id).first()
        if number is None:
            return None
        if result.qr_image or result.qr_code or result.pairing_code:
            qr = QrUpdate(qr_image=result.qr_image, qr_code=result.qr_code, pairing_code=result.pairing_code)
            number_qr_update(number=number, event=qr)
        elif result.state in CONNECTION_STATES:
            number_connection_update(number=number, event=ConnectionUpdate(state=result.state))
    return number


def number_logout(*, number_id: int) -> WhatsAppNumber | None:
    """Log the number out on its provider and record it as logged out; None when it is gone."""
    number = WhatsAppNumber.objects.select_related("server").filter(pk=number_id).first()
    if number is None:
        return None
    if number.state != WhatsAppNumber.State.NOT_PROVISIONED:
        adapter_for(number.provider).logout(number_provider_target(number))
    with transaction.atomic():
        event_log_lock(number.organization_id)
        number = WhatsAppNumber.objects.filter(pk=number_id).first()
        if number is None:
            return None
        update = ConnectionUpdate(state=WhatsAppNumber.State.LOGGED_OUT, reason="Logged out from Conversa.")
        number_connection_update(number=number, event=update)
    return number


@transaction.atomic
def number_failure_report(*, number_id: int, reason: str) -> None:
    """Tell the number's page that a provider call failed, keeping the number's state as it is.

    Not a connection update: a failed call is no news from the number, so `last_seen_at` stays.
    """
    organization_id = WhatsAppNumber.objects.filter(pk=number_id).values_list("organization_id", flat=True).first()
    if organization_id is None:
        return
    event_log_lock(organization_id)
    number_state_event(WhatsAppNumber.objects.get(pk=number_id), reason=reason)
