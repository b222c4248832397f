"""Helpers for the console tests: the service in-process, a real webhook receiver on loopback,
policies with playbooks. (No tests here.)"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from fastapi.testclient import TestClient

from conftest import HOME_UA, ts
from kabuguard.console.webhooks import receiver_secret, verify
from kabuguard.service.app import create_app
from kabuguard.service.auth import create_key
from kabuguard.service.settings import Settings
from test_service_support import free_port

SECRET = "test-webhook-secret-0123456789"


_PORTS: set[int] = set()  # handed to receivers in this test process


class WebhookReceiver:
    """An HTTP server of the test's own that records every delivery and checks its signature.
    Its port is chosen at once, so a service can be pointed at it before it listens (down)."""

    def __init__(self, service_secret: str = SECRET) -> None:
        # Two ports asked for one after the other may be the same one (nothing listens yet).
        self.port = free_port()
        while self.port in _PORTS:
            self.port = free_port()
        _PORTS.add(self.port)
        # What the firm's operator hands this receiver (`kabuguard keys webhook-secret URL`).
        self.secret = receiver_secret(service_secret, self.url)
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
                    "signed": verify(receiver.secret, body, self.headers.get("X-Kabuguard-Signature", ""),
                                     self.headers.get("X-Kabuguard-Delivery", ""))})
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


class Served:
    """The service in this process (its lifespan, deliverer included, on the TestClient's loop)."""

    def __init__(self, settings: Settings) -> None:
        self.app = create_app(settings)
        self.service = self.app.state.service
        self.key = create_key(self.service.db, "acme", "test")[1]
        self.client = TestClient(self.app)

    def post(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        answer = self.client.post("/v1/events", json=events, headers={"X-API-Key": self.key})
        assert answer.status_code == 200, answer.text
        return answer.json()["results"]

    def contain(self, accounts: list[str], reason: str = "confirmed takeover") -> list[str]:
        call = functools.partial(self.service.containment.contain, "hana", "acme", accounts, reason)
        return self.client.portal.call(call)  # type: ignore[union-attr]


def late_login(account: str, n: int = 1) -> dict[str, Any]:
    return {"event_id": f"late-{account}-{n}", "type": "login", "ts": ts(21, 20, n), "account_id": account,
            "session_id": f"s-late-{n}", "success": True, "ip": "126.1.3.5", "user_agent": HOME_UA,
            "device_id": "dev-3", "mfa": "sms", "channel": "web"}


def policy_with(tmp_path: Path, playbooks: list[dict[str, Any]]) -> Path:
    """The bundled policy with these playbooks."""
    raw = yaml.safe_load((Path(__file__).parent.parent / "kabuguard/policy/default.yaml").read_text())
    raw["playbooks"] = playbooks
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path
