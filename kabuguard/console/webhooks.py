"""Signed webhooks from an outbox: each containment action reaches every receiver, retried with
backoff until it answers 2xx, so an action taken while a receiver is down is delivered when it
is back.

A delivery is a POST of the action as JSON with

    X-Kabuguard-Delivery: <action id>            (the receiver's key for dropping repeats)
    X-Kabuguard-Signature: t=<unix seconds>,v2=<hex HMAC-SHA256(receiver secret, "<t>.<action id>." + body)>

Each receiver has its own secret, derived from the service's `webhook_secret` and the receiver's
URL (`receiver_secret`, printed by `kabuguard keys webhook-secret URL`): a receiver cannot sign for
another. The receiver recomputes the HMAC, and refuses a stale `t` and a delivery id it was not
signed with (a captured delivery resent under a new id).
Rows are claimed before sending (a lease), so several workers never send one row at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from kabuguard.console.clock import now_iso, now_us
from kabuguard.console.models import webhook_outbox

log = logging.getLogger("kabuguard.console")
_LEASE_US = 60_000_000


def receiver_secret(webhook_secret: str, receiver: str) -> str:
    """The secret one receiver verifies with: the service's secret keyed by the receiver's URL."""
    return hmac.new(webhook_secret.encode(), receiver.strip().encode(), hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, delivery: str, timestamp: int | None = None) -> str:
    """The signature header's value for `body` sent as `delivery` at `timestamp` (now by default)."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.{delivery}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v2={mac}"


def verify(secret: str, body: bytes, header: str, delivery: str, tolerance_s: int = 300) -> bool:
    """Whether `header` signs `body` as `delivery` with the receiver's `secret` within
    `tolerance_s` of now (for receivers)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    expected = sign(secret, body, delivery, t).encode()
    return abs(time.time() - t) <= tolerance_s and hmac.compare_digest(expected, header.encode())


class Deliverer:
    """Sends due outbox rows; one per worker process, woken at once when an action is recorded."""

    def __init__(self, engine: Engine, secret: str, base_backoff_s: float = 1.0, max_backoff_s: float = 300.0,
                 timeout_s: float = 5.0) -> None:
        self.engine = engine
        self.secret = secret
        self.base_backoff_s = base_backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self, poll_s: float = 1.0) -> None:
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            while True:
                try:
                    rows = await run_in_threadpool(self._claim)
                    await asyncio.gather(*(self._send(client, row) for row in rows))
                except Exception as exc:  # the database is down: try again on the next tick
                    log.warning("webhook outbox postponed", extra={"error": type(exc).__name__})
                    rows = []
                if not rows:
                    try:
                        await asyncio.wait_for(self._wake.wait(), poll_s)
                    except TimeoutError:
                        pass
                    self._wake.clear()

    def _claim(self, limit: int = 50) -> list[dict[str, Any]]:
        """Due rows, each leased to this process (a row another worker leased is skipped)."""
        now = now_us()
        with self.engine.begin() as conn:
            due = conn.execute(select(webhook_outbox).where(
                webhook_outbox.c.delivered_at.is_(None), webhook_outbox.c.next_attempt_us <= now,
                webhook_outbox.c.claimed_until_us < now).order_by(webhook_outbox.c.seq).limit(limit)).mappings().all()
        claimed = []
        for row in due:
            with self.engine.begin() as conn:
                got = conn.execute(update(webhook_outbox).where(
                    webhook_outbox.c.seq == row["seq"], webhook_outbox.c.claimed_until_us < now,
                    webhook_outbox.c.delivered_at.is_(None)).values(claimed_until_us=now + _LEASE_US))
            if got.rowcount == 1:
                claimed.append(dict(row))
        return claimed

    async def _send(self, client: httpx.AsyncClient, row: dict[str, Any]) -> None:
        body = row["body"]
        error = None
        try:
            answer = await client.post(row["receiver"], content=body, headers={
                "Content-Type": "application/json", "X-Kabuguard-Delivery": row["action_id"],
                "X-Kabuguard-Signature": sign(receiver_secret(self.secret, row["receiver"]), body, row["action_id"])})
            if not 200 <= answer.status_code < 300:
                error = f"HTTP {answer.status_code}"
        except Exception as exc:  # noqa: BLE001 - any failure of this delivery is this row's, retried with backoff
            error = type(exc).__name__
        await run_in_threadpool(self._settle, row, error)

    def _settle(self, row: dict[str, Any], error: str | None) -> None:
        attempts = row["attempts"] + 1
        if error is None:
            values: dict[str, Any] = {"delivered_at": now_iso(), "attempts": attempts, "last_error": None}
        else:
            # The doubling stops at 2**62, far past any max, before the float overflows (a receiver
            # down for days passes 1024 attempts).
            backoff = min(self.max_backoff_s, self.base_backoff_s * 2.0 ** min(attempts - 1, 62))
            values = {"attempts": attempts, "last_error": error, "claimed_until_us": 0,
                      "next_attempt_us": now_us() + int(backoff * 1_000_000)}
            log.info("webhook delivery failed", extra={"action_id": row["action_id"], "attempts": attempts,
                                                       "error": error, "retry_in_s": backoff})
        with self.engine.begin() as conn:
            conn.execute(update(webhook_outbox).where(webhook_outbox.c.seq == row["seq"]).values(**values))


def deliveries(engine: Engine, action_ids: list[str] | None = None, limit: int = 500) -> list[dict[str, Any]]:
    """Outbox rows (newest first): receiver, attempts, delivered or the last error."""
    query = select(webhook_outbox.c.seq, webhook_outbox.c.action_id, webhook_outbox.c.receiver,
                   webhook_outbox.c.attempts, webhook_outbox.c.delivered_at, webhook_outbox.c.last_error)
    if action_ids is not None:
        query = query.where(webhook_outbox.c.action_id.in_(action_ids))
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query.order_by(webhook_outbox.c.seq.desc()).limit(limit)).mappings()]
