"""An optional read replica (DATABASE_REPLICA_URL) for read-heavy pages and API lists.

Only views that opt in with `@replica_reads` read from the replica, and only while they have not
written: a write pins the rest of the request to the primary, so a read right after a write sees
it. A request that changed something (an unsafe method) also sets a short-lived cookie that keeps
that browser on the primary for REPLICA_PIN_SECONDS, so the page a form redirects to shows the
change even while the replica lags behind. Everything else (services, tasks, webhooks, admin)
never sees the replica. Without DATABASE_REPLICA_URL nothing changes.
"""

from contextvars import ContextVar
from functools import wraps

from django.conf import settings
from django.db import connections

REPLICA = "replica"
PIN_COOKIE = "conversa_primary"
_replica_allowed: ContextVar[bool] = ContextVar("replica_allowed", default=False)


def replica_configured() -> bool:
    return REPLICA in connections.settings


def replica_reads(view):
    """Let a read-heavy view read from the replica, unless this browser wrote a moment ago."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not replica_configured() or request.COOKIES.get(PIN_COOKIE):
            return view(request, *args, **kwargs)
        token = _replica_allowed.set(True)
        try:
            return view(request, *args, **kwargs)
        finally:
            _replica_allowed.reset(token)

    return wrapped


class PrimaryReplicaRouter:
    """Reads to the replica where a view allowed it; every write, and what follows it, to the primary."""

    def db_for_read(self, model, **hints):
        return REPLICA if _replica_allowed.get() else None

    def db_for_write(self, model, **hints):
        _replica_allowed.set(False)  # read-your-writes: the rest of this request reads the primary
        return "default"

    def allow_relation(self, obj1, obj2, **hints):
        return True

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db != REPLICA  # the replica gets its schema and rows by replication


class PrimaryPinMiddleware:
    """After a request that may have written, keep the browser on the primary for a few seconds."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if replica_configured() and request.method not in ("GET", "HEAD", "OPTIONS"):
            response.set_cookie(PIN_COOKIE, "1", max_age=settings.REPLICA_PIN_SECONDS, httponly=True, samesite="Lax")
        return response
