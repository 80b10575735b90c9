"""Celery tasks of inbound side work: media downloads (see messaging.services.inbound)."""

import logging
import random

from celery import shared_task
from django.conf import settings

from messaging.models import Message
from messaging.services.inbound import (
    MediaDownloadError,
    media_fetch,
    media_pending_sweep,
    message_media_fail,
    message_media_store,
)

logger = logging.getLogger(__name__)


def media_retry_delay(attempt: int) -> float:
    """Seconds before download attempt `attempt + 1`: capped exponential backoff with full jitter."""
    cap = min(settings.OUTBOX_RETRY_MAX_SECONDS, settings.OUTBOX_RETRY_BASE_SECONDS * 2**attempt)
    return random.uniform(cap / 2, cap)  # noqa: S311 (jitter, not security)


@shared_task(bind=True, max_retries=None, ignore_result=True)
def media_download(self, message_id: int) -> None:
    """Copy a message's media into our storage, retrying temporary failures with backoff."""
    message = (
        Message.objects.select_related("number__server")
        .filter(pk=message_id, media_state=Message.MediaState.PENDING)
        .first()
    )
    if message is None:
        return  # stored already (a re-delivered task), or nothing to download
    try:
        content, mime_type = media_fetch(message=message)
    except MediaDownloadError as error:
        attempt = self.request.retries + 1
        if error.permanent or attempt >= settings.MEDIA_DOWNLOAD_MAX_ATTEMPTS:
            message_media_fail(message_id=message_id, error=f"{error.message} (after {attempt} attempts)")
            return
        logger.info("media of message %s: attempt %s failed: %s", message_id, attempt, error.message)
        raise self.retry(countdown=media_retry_delay(attempt)) from error
    message_media_store(message_id=message_id, content=content, mime_type=mime_type)


@shared_task(name="messaging.tasks.inbound.media_pending_sweep", ignore_result=True)
def media_pending_sweep_task() -> dict:
    """Re-enqueue media downloads left pending by a lost task; fail those pending far too long."""
    return media_pending_sweep()
