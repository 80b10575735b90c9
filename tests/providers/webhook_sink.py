"""A stand-in for our webhook endpoint: records what a fake provider server posts, as it arrived."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from providers.base import WebhookRequest


class WebhookSink:
    """Listen on loopback; every request becomes a WebhookRequest with the full URL called."""

    def __init__(self, answers: list | None = None):
        # What to answer, one per request in order (then 200): a status code, or a tuple
        # (status, headers), or ("hang", seconds) to answer only after that long.
        self.answers = list(answers or [])
        self.received: list[WebhookRequest] = []
        self._condition = threading.Condition()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host}:{port}"

    def wait_for(self, count: int, timeout: float = 5.0) -> list[WebhookRequest]:
        """Return the first `count` webhooks, waiting for them; fail the test if they never come."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while len(self.received) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"expected {count} webhooks, got {len(self.received)}")
                self._condition.wait(remaining)
            return list(self.received[:count])

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def _handler_class(self):
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                host, port = sink._http.server_address[:2]
                request = WebhookRequest(
                    method=self.command,
                    url=f"http://{host}:{port}{self.path}",
                    headers=dict(self.headers.items()),
                    body=body,
                    query=parse_qs(urlsplit(self.path).query, keep_blank_values=True),
                )
                with sink._condition:
                    sink.received.append(request)
                    sink._condition.notify_all()
                    answer = sink.answers.pop(0) if sink.answers else 200
                status, headers = answer if isinstance(answer, tuple) else (answer, {})
                if status == "hang":
                    time.sleep(headers)
                    status, headers = 200, {}
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _handle  # noqa: N815

            def log_message(self, format, *args):
                pass

        return Handler
