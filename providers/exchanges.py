"""Raw provider HTTP exchanges, recorded on request (the admin provider playground shows them).

Recording is off unless a caller opens `exchanges_recorded()`; secrets it names are masked
everywhere (URL, headers, bodies) before anything is kept.
"""

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass

import requests

_recording: contextvars.ContextVar[list | None] = contextvars.ContextVar("provider_exchanges", default=None)
_secrets: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("provider_secrets", default=())

MASK = "•••"
SECRET_HEADERS = frozenset({"authorization", "apikey", "x-api-key", "cookie"})
BODY_LIMIT = 20_000


@dataclass(frozen=True)
class Exchange:
    method: str
    url: str
    request_headers: dict[str, str]
    request_body: str
    status: int | None
    response_headers: dict[str, str]
    response_body: str
    error: str


@contextmanager
def exchanges_recorded(*, secrets: list[str]):
    """Record every provider exchange made inside the block into the yielded list, secrets masked."""
    exchanges: list[Exchange] = []
    recording_token = _recording.set(exchanges)
    secrets_token = _secrets.set(tuple(secret for secret in secrets if secret and len(secret) >= 4))
    try:
        yield exchanges
    finally:
        _recording.reset(recording_token)
        _secrets.reset(secrets_token)


def exchange_record(method: str, url: str, *, response: requests.Response | None, error: str) -> None:
    """Keep this exchange if a recording is open; otherwise do nothing (the hot path)."""
    exchanges = _recording.get()
    if exchanges is None:
        return
    request = response.request if response is not None else None
    exchanges.append(
        Exchange(
            method=method,
            url=_mask(url),
            request_headers=_headers_masked(request.headers if request is not None else {}),
            request_body=_mask(_text(request.body if request is not None else b"")),
            status=response.status_code if response is not None else None,
            response_headers=_headers_masked(response.headers if response is not None else {}),
            response_body=_mask(response.text[:BODY_LIMIT] if response is not None else ""),
            error=_mask(error),
        )
    )


def _text(body) -> str:
    if body is None:
        return ""
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    return str(body)[:BODY_LIMIT]


def _headers_masked(headers) -> dict[str, str]:
    return {
        name: MASK if name.lower() in SECRET_HEADERS else _mask(str(value)) for name, value in dict(headers).items()
    }


def _mask(text: str) -> str:
    for secret in _secrets.get():
        text = text.replace(secret, MASK)
    return text
