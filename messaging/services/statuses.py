"""Delivery statuses move forward only, whatever order providers report them in.

queued → sending → sent → delivered → read; `failed` from any state before delivered. A status
that arrives late never moves a message back: read never returns to delivered, and a late `sent`
does not undo `failed` (Green API sends `sent` after `failed` for the same message, green-api#253).
Only the provider's proof that the message arrived (delivered or read) overrides `failed`.
"""

from django.db import transaction

from crm.models import WhatsAppNumber
from messaging.events import event_log_lock, message_status_event
from messaging.models import Message

_RANK = {
    Message.Status.QUEUED: 0,
    Message.Status.SENDING: 1,
    Message.Status.SENT: 2,
    Message.Status.DELIVERED: 3,
    Message.Status.READ: 4,
}
_PROOF_OF_ARRIVAL = {Message.Status.DELIVERED, Message.Status.READ}


def status_moves_forward(current: str, new: str) -> bool:
    """Return whether an outbound message in `current` may take the reported status `new`."""
    if new == current:
        return False
    if new == Message.Status.FAILED:
        return current in (Message.Status.QUEUED, Message.Status.SENDING, Message.Status.SENT)
    if current == Message.Status.FAILED:
        return new in _PROOF_OF_ARRIVAL
    return _RANK.get(new, -1) > _RANK.get(current, -1)


@transaction.atomic
def message_status_report(*, number_id: int, provider_message_id: str, status: str, error: str = "") -> Message | None:
    """Apply a provider's status report to our outbound message, if it moves it forward.

    Return the message when it changed, None when the report is stale, a duplicate, or about a
    message we do not have (a provider may report on messages sent from the phone).
    """
    organization_id = WhatsAppNumber.objects.filter(pk=number_id).values_list("organization_id", flat=True).first()
    if organization_id is None:
        return None
    event_log_lock(organization_id)
    message = (
        Message.objects.select_for_update()
        .filter(number_id=number_id, provider_message_id=provider_message_id, direction=Message.Direction.OUTBOUND)
        .first()
    )
    if message is None or not status_moves_forward(message.status, status):
        return None
    message.status = status
    message.error = error if status == Message.Status.FAILED else ""
    message.save(update_fields=["status", "error", "updated_at"])
    message_status_event(message)
    return message
