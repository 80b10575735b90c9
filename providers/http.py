"""HTTP calls to providers: one pooled session, timeouts on every call, errors mapped to ProviderError.

Every call goes through the circuit breaker of its target, so one dead server stops costing a worker
a full timeout per message once it has failed repeatedly.
"""

import logging
import re
import threading
from email.utils import parsedate_to_datetime

import requests
from django.conf import settings
from django.utils import timezone

from providers.base import ProviderError, ProviderTarget
from providers.breaker import breaker_call
from providers.exchanges import exchange_record

logger = logging.getLogger(__name__)

_local = threading.local()

# Green API carries its token in the URL path; never let one reach a log line or an error (error
# bodies may echo the path, so whole messages are redacted, not only URLs).
_SECRET_PATH_SEGMENT = re.compile(r"(/waInstance\d+/[A-Za-z]+/)[^/?#\s\"']+")


def url_redact(url: str) -> str:
    return _SECRET_PATH_SEGMENT.sub(r"\1***", url)


def _session() -> requests.Session:
    # One session per thread: requests.Session is not thread-safe, and pooling per thread keeps
    # connections warm for the worker process that owns it.
    session = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        _local.session = session
    return session


def retry_after_seconds(value: str | None) -> float | None:
    """Read a Retry-After header: seconds, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - timezone.now()).total_seconds())
    except (TypeError, ValueError):
        return None


def provider_request(target: ProviderTarget, method: str, url: str, **kwargs) -> requests.Response:
    """Send one request for `target` through its circuit breaker; return the response.

    Raise ProviderError: temporary for timeouts, refused connections, 5xx and 429 (with its
    Retry-After) and an open circuit; permanent for other 4xx. Callers that must read a body
    before deciding (errors sent with HTTP 200) do so on the returned response.
    """
    kwargs.setdefault("timeout", (settings.PROVIDER_CONNECT_TIMEOUT, settings.PROVIDER_READ_TIMEOUT))
    return breaker_call(target.breaker_key or target.provider, _request_checked, method, url, **kwargs)


def _request_checked(method: str, url: str, **kwargs) -> requests.Response:
    redacted = url_redact(url)
    try:
        response = _session().request(method, url, **kwargs)
    except requests.RequestException as error:
        exchange_record(method, url, response=None, error=str(error))
        _raise_unreachable(method, redacted, error)
    exchange_record(method, url, response=response, error="")
    summary = url_redact(f"{method} {url} answered {response.status_code}: {response.text[:300]}")
    if response.status_code == 429 or response.status_code >= 500:
        raise ProviderError(
            summary,
            permanent=False,
            status_code=response.status_code,
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            body=response.text,
        )
    if response.status_code >= 400:
        raise ProviderError(
            summary,
            permanent=True,
            status_code=response.status_code,
            # Kept for adapters that reclassify a 4xx as temporary by its error code (Meta's 130429).
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            body=response.text,
        )
    return response


def _raise_unreachable(method: str, redacted: str, error: requests.RequestException):
    # The chained requests error would carry the full URL (a Green API token in its path) into
    # tracebacks and error trackers, so its text is redacted into ours and the chain dropped.
    if isinstance(error, requests.Timeout):
        raise ProviderError(f"{method} {redacted} timed out ({url_redact(str(error))})", permanent=False) from None
    if isinstance(error, requests.ConnectionError):
        raise ProviderError(
            f"{method} {redacted} could not connect ({url_redact(str(error))})", permanent=False
        ) from None
    raise ProviderError(f"{method} {redacted} failed ({url_redact(str(error))})", permanent=True) from None


def response_json(response: requests.Response) -> dict | list:
    """Return the body as JSON; raise a temporary ProviderError when it is not JSON."""
    try:
        return response.json()
    except ValueError as error:
        raise ProviderError(
            f"{url_redact(response.url)} answered {response.status_code} with a body that is not JSON",
            permanent=False,
            status_code=response.status_code,
        ) from error
