"""The machinery every fake provider server shares: HTTP routing, faults on demand, webhook delivery.

A fake speaks one provider's real HTTP contract over loopback (paths, auth, status codes, bodies)
and calls our webhook URL the way that provider does. Each provider's fake subclasses
`FakeProviderServer`, adds its routes, and keeps its own state (instances, sent messages).

Faults (set from tests, or over HTTP at POST /_fake/faults):
- `latency_ms`: every provider call waits this long;
- `error_rate`: this share of calls answers 500 (`fail_next` forces the next N, with any status);
- `rate_limited_for`: N calls answer 429 with `Retry-After: retry_after_seconds`;
- `hang`: calls never answer until the fault is lifted (clients must time out);
- `duplicate_webhooks`: every webhook is delivered twice;
- `reorder_webhooks`: webhooks are delivered in pairs, second first.
"""

import heapq
import itertools
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import requests

logger = logging.getLogger(__name__)


@dataclass
class FakeRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)  # named groups of the route

    def json(self):
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode(), keep_blank_values=True)

    def header(self, name: str) -> str:
        lowered = name.lower()
        return next((value for key, value in self.headers.items() if key.lower() == lowered), "")


@dataclass
class FakeResponse:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload, headers: dict[str, str] | None = None) -> "FakeResponse":
        return cls(status, json.dumps(payload).encode(), "application/json", headers or {})


@dataclass
class Faults:
    latency_ms: int = 0
    error_rate: float = 0.0
    rate_limited_for: int = 0
    retry_after_seconds: int = 1
    hang: bool = False
    duplicate_webhooks: bool = False
    reorder_webhooks: bool = False


@dataclass
class SentWebhook:
    url: str
    body: bytes
    headers: dict[str, str]
    status: int | None  # None when it could not be delivered


Handler = Callable[[FakeRequest], FakeResponse]


class _QuietThreadingHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that gave up (our timeout tests do, on purpose) is not worth a traceback.
        logger.debug("fake server: client %s went away", client_address, exc_info=True)


class FakeProviderServer:
    """A threaded HTTP server on loopback with routes, faults and a webhook dispatcher."""

    provider_name = "fake"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, webhook_delay_seconds: float = 0.05):
        self.faults = Faults()
        self.webhook_delay_seconds = webhook_delay_seconds
        self.requests: list[FakeRequest] = []  # every provider call received, for assertions
        self.webhooks: list[SentWebhook] = []  # every webhook sent, for assertions
        self._routes: list[tuple[str, re.Pattern, Handler]] = []
        self._forced_failures: list[int] = []
        self._lock = threading.Lock()
        self._unhang = threading.Event()
        self._held_webhook: tuple | None = None
        # Webhooks wait here, by due time, for the one thread that sends them (see _webhooks_send).
        self._outbox: list[tuple] = []
        self._outbox_changed = threading.Condition()
        self._outbox_sequence = itertools.count()
        self._is_stopping = False
        self._sender = threading.Thread(target=self._webhooks_send, name=f"fake-{self.provider_name}-webhooks")
        self._sender.daemon = True
        self._sender.start()
        self._webhook_session = requests.Session()
        self._random = random.Random(0)  # noqa: S311 (fault injection, not security)
        self._http = _QuietThreadingHTTPServer((host, port), self._handler_class())
        self._thread: threading.Thread | None = None
        self.route("POST", r"/_fake/faults", self._faults_set)
        self.route("GET", r"/_fake/state", self._state_get)

    # --- lifecycle -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeProviderServer":
        # A short poll interval makes stop() (every test's teardown) take 50 ms instead of 500.
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, name=f"fake-{self.provider_name}"
        )
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        self._unhang.set()
        with self._outbox_changed:
            self._is_stopping = True
            self._outbox_changed.notify()
        self._http.shutdown()
        self._http.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> "FakeProviderServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Serve in the foreground (the command-line entry point)."""
        self._http.serve_forever()

    # --- routes and faults -----------------------------------------------------------------------
    def route(self, method: str, pattern: str, handler: Handler) -> None:
        """Answer `method` requests whose path fully matches `pattern` (named groups become params)."""
        self._routes.append((method, re.compile(pattern), handler))

    def fail_next(self, count: int, status: int = 503) -> None:
        """Make the next `count` provider calls answer `status`."""
        with self._lock:
            self._forced_failures.extend([status] * count)

    def faults_set(self, **changes) -> None:
        for name, value in changes.items():
            if not hasattr(self.faults, name):
                raise ValueError(f"Unknown fault {name!r}")
            setattr(self.faults, name, type(getattr(self.faults, name))(value))
        if self.faults.hang:
            self._unhang.clear()
        else:
            self._unhang.set()

    def _faults_set(self, request: FakeRequest) -> FakeResponse:
        try:
            self.faults_set(**(request.json() or {}))
        except (ValueError, TypeError) as error:
            return FakeResponse.json(400, {"error": str(error)})
        return FakeResponse.json(200, asdict(self.faults))

    def _state_get(self, request: FakeRequest) -> FakeResponse:
        return FakeResponse.json(200, {"faults": asdict(self.faults), "requests": len(self.requests)})

    def _injected_fault(self) -> FakeResponse | None:
        faults = self.faults
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        if faults.hang:
            self._unhang.wait(timeout=120)
        with self._lock:
            if self._forced_failures:
                status = self._forced_failures.pop(0)
                return self.error_response(status)
            if faults.rate_limited_for > 0:
                faults.rate_limited_for -= 1
                response = self.error_response(429)
                response.headers["Retry-After"] = str(faults.retry_after_seconds)
                return response
            if faults.error_rate and self._random.random() < faults.error_rate:
                return self.error_response(500)
        return None

    def error_response(self, status: int) -> FakeResponse:
        """The provider's own error body for an injected failure; subclasses give its real shape."""
        return FakeResponse.json(status, {"error": f"injected {status}"})

    def dispatch(self, request: FakeRequest) -> FakeResponse:
        is_control = request.path.startswith("/_fake/")
        if not is_control:
            self.requests.append(request)
            fault = self._injected_fault()
            if fault:
                return fault
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(request.path)
            if match and method == request.method:
                request.params = match.groupdict()
                return handler(request)
        return self.not_found(request)

    def not_found(self, request: FakeRequest) -> FakeResponse:
        return FakeResponse.json(404, {"error": "Not Found", "path": request.path})

    # --- webhooks --------------------------------------------------------------------------------
    def webhook_send(self, url: str, body: bytes, headers: dict[str, str], *, delay: float | None = None) -> None:
        """Deliver a webhook from a background thread, as the provider would, with faults applied."""
        if not url:
            return
        wait = self.webhook_delay_seconds if delay is None else delay
        copies = 2 if self.faults.duplicate_webhooks else 1
        if self.faults.reorder_webhooks:
            with self._lock:
                held, self._held_webhook = self._held_webhook, None
                if held is None:
                    self._held_webhook = (url, body, headers, copies)
                    return
            # Deliver the newer one first, then the one held back.
            self._webhook_later(wait, [(url, body, headers, copies), held])
            return
        self._webhook_later(wait, [(url, body, headers, copies)])

    def webhook_flush(self) -> None:
        """Deliver a webhook held back by `reorder_webhooks` (nothing came to pair with it)."""
        with self._lock:
            held, self._held_webhook = self._held_webhook, None
        if held:
            self._webhook_later(0, [held])

    def _webhook_later(self, delay: float, batch: list[tuple]) -> None:
        due = time.monotonic() + delay
        with self._outbox_changed:
            for url, body, headers, copies in batch:
                for _ in range(copies):
                    heapq.heappush(self._outbox, (due, next(self._outbox_sequence), url, body, headers))
            self._outbox_changed.notify()

    def _webhooks_send(self) -> None:
        """Send webhooks one at a time, in due-time order (then scheduling order), until stopped.

        One sender, like the providers' own per-instance queues: an echo scheduled before its
        statuses arrives before them, however busy the machine is. Out-of-order delivery happens
        only when a fault asks for it (`reorder_webhooks`).
        """
        while True:
            with self._outbox_changed:
                while not self._is_stopping and (not self._outbox or self._outbox[0][0] > time.monotonic()):
                    timeout = self._outbox[0][0] - time.monotonic() if self._outbox else None
                    self._outbox_changed.wait(timeout)
                if self._is_stopping:
                    return
                _, _, url, body, headers = heapq.heappop(self._outbox)
            self._webhook_post(url, body, headers)

    def _webhook_post(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        try:
            status = self._webhook_session.post(url, data=body, headers=headers, timeout=10).status_code
        except requests.RequestException as error:
            logger.warning("fake %s: webhook to %s failed: %s", self.provider_name, url, error)
            status = None
        with self._lock:
            self.webhooks.append(SentWebhook(url=url, body=body, headers=headers, status=status))

    # --- HTTP plumbing ---------------------------------------------------------------------------
    def _handler_class(self):
        server = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body leave in two writes; with Nagle's algorithm on, the body waited for
            # the client's delayed ACK: 40 ms added to every call (measured), which real providers
            # do not add. TCP_NODELAY sends each write at once.
            disable_nagle_algorithm = True

            def _handle(self):
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = FakeRequest(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query, keep_blank_values=True),
                    headers=dict(self.headers.items()),
                    body=self.rfile.read(length) if length else b"",
                )
                try:
                    response = server.dispatch(request)
                except Exception:
                    logger.exception("fake %s crashed on %s %s", server.provider_name, self.command, self.path)
                    response = FakeResponse.json(500, {"error": "fake server crashed"})
                self.send_response(response.status)
                self.send_header("Content-Type", response.content_type)
                self.send_header("Content-Length", str(len(response.body)))
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(response.body)

            do_GET = do_POST = do_PUT = do_DELETE = _handle  # noqa: N815 (http.server's names)

            def log_message(self, format, *args):
                logger.debug("fake %s: " + format, server.provider_name, *args)

        return RequestHandler
