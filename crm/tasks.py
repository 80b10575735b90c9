"""Celery tasks of the crm app."""

import logging
from importlib import import_module

from celery import shared_task
from django.conf import settings

from providers.base import ProviderError, ProviderTarget
from providers.registry import adapter_for

logger = logging.getLogger(__name__)


@shared_task
def expired_sessions_clear() -> None:
    """Delete expired sessions from the session store (registered daily in config/periodic.py)."""
    # Django never purges expired database sessions by itself; this is its `clearsessions` command.
    import_module(settings.SESSION_ENGINE).SessionStore.clear_expired()


@shared_task(bind=True, ignore_result=True, max_retries=5)
def provider_instance_delete(self, target: dict) -> None:
    """Remove a deleted number's instance from its provider (the row is already gone).

    A temporary failure retries with backoff; a permanent one (already gone, say) is only logged.
    """
    provider_target = ProviderTarget(**target)
    try:
        adapter_for(provider_target.provider).delete(provider_target)
    except ProviderError as error:
        if error.permanent or self.request.retries >= self.max_retries:
            logger.warning("instance %s not removed from its provider: %s", provider_target.instance_name, error)
            return
        raise self.retry(exc=error, countdown=error.retry_after or 2 ** (self.request.retries + 1)) from error
