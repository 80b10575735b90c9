"""Structured logs: every line carries the ids of what it is about (request, organization, message, task).

The ids live in a context variable, bound where they become known: the request id by
`RequestIdMiddleware` (the client's `X-Request-ID` or a new one, echoed in the response), the
organization by the organization middleware and the webhook view, the task id by Celery's task
signals, the message id by the services handling one. asgiref copies context variables into the
sync thread of a view and back, and each Celery task starts with a fresh context.

`LOG_FORMAT=json` writes one JSON object a line (`JsonFormatter`); `plain` keeps text lines.
"""

import json
import logging
import re
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime

_fields: ContextVar[dict | None] = ContextVar("log_fields", default=None)
REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_SHAPE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
FIELD_NAMES = ("request_id", "organization_id", "message_id", "task_id", "task")


def log_fields_bind(**fields) -> None:
    """Add ids to everything logged from here on in this request or task."""
    _fields.set({**(_fields.get() or {}), **{key: value for key, value in fields.items() if value is not None}})


def log_fields_reset() -> None:
    _fields.set(None)


def log_fields() -> dict:
    return dict(_fields.get() or {})


class ContextFilter(logging.Filter):
    """Copy the bound ids onto each record, so any formatter can print them."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name in FIELD_NAMES:
            setattr(record, name, None)
        for name, value in (_fields.get() or {}).items():
            setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, the bound ids, and any exception."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELD_NAMES:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def request_id_of(request) -> str:
    offered = request.headers.get(REQUEST_ID_HEADER, "")
    # A client's id is kept when it looks like one, so a proxy's id ties its logs to ours.
    return offered if _REQUEST_ID_SHAPE.match(offered) else uuid.uuid4().hex


class RequestIdMiddleware:
    """Bind a request id for the request's log lines and answer it in `X-Request-ID`."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        from asgiref.sync import iscoroutinefunction, markcoroutinefunction

        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        request_id = self._bind(request)
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response

    async def _acall(self, request):
        request_id = self._bind(request)
        response = await self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response

    def _bind(self, request) -> str:
        log_fields_reset()
        request.request_id = request_id_of(request)
        log_fields_bind(request_id=request.request_id)
        return request.request_id


def celery_signals_connect() -> None:
    """Give each task's log lines its task id and name (called once by config/celery.py)."""
    from celery.signals import task_postrun, task_prerun

    @task_prerun.connect(weak=False)
    def _task_started(task_id=None, task=None, **kwargs):
        log_fields_reset()
        log_fields_bind(task_id=task_id, task=getattr(task, "name", None))

    @task_postrun.connect(weak=False)
    def _task_finished(**kwargs):
        log_fields_reset()


class RoutineBeatFilter(logging.Filter):
    """Drop beat's "Sending due task" lines of the tasks it sends every few seconds.

    The webhook fan-out runs every 2 s: announcing each run would bury every other line of a
    terminal (`make run`) or a log pipeline. Their failures still log, at WARNING and above.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "celery.beat" or not record.args or "Sending due task" not in str(record.msg):
            return True
        from config.periodic import routine_task_names

        return record.args[0] not in routine_task_names()
