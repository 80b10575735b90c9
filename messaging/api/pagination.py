"""Keyset cursors for every list of the API: opaque strings over (sort key, id), never OFFSET.

A page is read with `WHERE (key, id) < cursor ORDER BY key DESC, id DESC LIMIT n + 1` on an index,
so page 1,000 costs what page 1 costs (field notes: 0.36 ms against OFFSET's 386 ms at depth 290k).
"""

import base64
import binascii
import json
from datetime import datetime

from django.db.models import Q, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers

from messaging.api.errors import ApiError

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def cursor_encode(*values) -> str:
    raw = json.dumps([v.isoformat() if isinstance(v, datetime) else v for v in values], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _invalid_cursor(name: str) -> ApiError:
    return ApiError(
        status_code=400,
        code="invalid_cursor",
        message=f"`{name}` is not a cursor this API gave out.",
        details={"parameter": name},
    )


def cursor_id(text: str, *, name: str) -> int:
    """Return the id inside an id cursor. Raise ApiError (400) for anything else."""
    values = _cursor_values(text, name=name)
    if len(values) != 1 or type(values[0]) is not int or values[0] < 0:
        raise _invalid_cursor(name)
    return values[0]


def cursor_time_and_id(text: str, *, name: str) -> tuple[datetime, int]:
    """Return the (timestamp, id) inside a history cursor. Raise ApiError (400) for anything else."""
    values = _cursor_values(text, name=name)
    if len(values) != 2 or not isinstance(values[0], str) or type(values[1]) is not int:
        raise _invalid_cursor(name)
    try:
        moment = datetime.fromisoformat(values[0])
    except ValueError as error:
        raise _invalid_cursor(name) from error
    if moment.tzinfo is None:
        raise _invalid_cursor(name)
    return moment, values[1]


def _cursor_values(text: str, *, name: str) -> list:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError) as error:
        raise _invalid_cursor(name) from error
    if not isinstance(values, list):
        raise _invalid_cursor(name)
    return values


class LimitSerializer(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=MAX_LIMIT, default=DEFAULT_LIMIT)


LIMIT_PARAMETER = OpenApiParameter(
    "limit", OpenApiTypes.INT, description=f"Items per page, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})."
)
CURSOR_PARAMETER = OpenApiParameter("cursor", OpenApiTypes.STR, description="The `next` cursor of the previous page.")


def id_page(queryset: QuerySet, *, cursor: str | None, limit: int, descending: bool = True) -> tuple[list, str | None]:
    """Return one page of `queryset` by id (newest first by default) and the cursor of the next one."""
    if cursor:
        after_id = cursor_id(cursor, name="cursor")
        queryset = queryset.filter(Q(id__lt=after_id) if descending else Q(id__gt=after_id))
    rows = list(queryset.order_by("-id" if descending else "id")[: limit + 1])
    has_more = len(rows) > limit
    rows = rows[:limit]
    return rows, cursor_encode(rows[-1].pk) if has_more else None


def page_body(results: list, next_cursor: str | None) -> dict:
    return {"results": results, "next": next_cursor}


def page_serializer(item_serializer, name: str):
    """The documented shape of an id-paged list of `item_serializer`."""
    return type(
        name,
        (serializers.Serializer,),
        {
            "results": item_serializer(many=True),
            "next": serializers.CharField(allow_null=True, help_text="Cursor of the next page; null on the last."),
        },
    )
