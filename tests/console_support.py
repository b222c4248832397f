"""Helpers for the console tests: a real webhook receiver on loopback. (No tests here.)"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kabuguard.console.webhooks import verify
from test_service_support import free_port

SECRET = "test-webhook-secret-0123456789"


class WebhookReceiver:
    """An HTTP server of the test's own that records every delivery and checks its signature.
    Its port is chosen at once, so a service can be pointed at it before it listens (down)."""

    def __init__(self, secret: str = SECRET) -> None:
        self.port = free_port()
        self.secret = secret
        self.received: list[dict[str, Any]] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server protocol
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append({
                    "delivery": self.headers["X-Kabuguard-Delivery"], "body": json.loads(body),
                    "signed": verify(receiver.secret, body, self.headers.get("X-Kabuguard-Signature", ""))})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def deliveries(self) -> list[str]:
        return [r["delivery"] for r in self.received]


def wait_for(condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
