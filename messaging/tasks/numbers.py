"""Celery tasks that talk to a number's provider on behalf of a page or API call.

Temporary provider errors retry with backoff; a permanent one (or the last retry) is recorded on
the number as a `number.state` event with the reason, so the page that asked shows why.
"""

import logging

from celery import shared_task

from crm.services import NoServerAvailableError
from messaging.services import numbers
from providers.base import ProviderError

logger = logging.getLogger(__name__)


def _retry_or_report(task, error: ProviderError, *, number_id: int, action: str) -> None:
    if not error.permanent and task.request.retries < task.max_retries:
        raise task.retry(exc=error, countdown=error.retry_after or 2 ** (task.request.retries + 1))
    logger.warning("number %s: %s failed: %s", number_id, action, error)
    numbers.number_failure_report(number_id=number_id, reason=f"Could not {action}: {error.message or error}")


@shared_task(bind=True, ignore_result=True, max_retries=3)
def number_connect_task(self, number_id: int, phone: str = "") -> None:
    """Provision and connect the number; its QR or state reaches its page as an event."""
    try:
        numbers.number_connect(number_id=number_id, phone=phone)
    except ProviderError as error:
        _retry_or_report(self, error, number_id=number_id, action="connect")
    except NoServerAvailableError as error:
        # Not temporary enough to retry: an operator has to add or undrain a server first.
        logger.warning("number %s: connect failed: %s", number_id, error)
        numbers.number_failure_report(number_id=number_id, reason=f"Could not connect: {error}")


@shared_task(bind=True, ignore_result=True, max_retries=3)
def number_logout_task(self, number_id: int) -> None:
    """Log the number out on its provider and record it."""
    try:
        numbers.number_logout(number_id=number_id)
    except ProviderError as error:
        _retry_or_report(self, error, number_id=number_id, action="log out")
