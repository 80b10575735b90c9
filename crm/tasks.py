"""Celery tasks of the crm app."""

from importlib import import_module

from celery import shared_task
from django.conf import settings


@shared_task
def expired_sessions_clear() -> None:
    """Delete expired sessions from the session store (registered daily in config/periodic.py)."""
    # Django never purges expired database sessions by itself; this is its `clearsessions` command.
    import_module(settings.SESSION_ENGINE).SessionStore.clear_expired()
