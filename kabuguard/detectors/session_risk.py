"""Risky session: the risk of the login that opened a session carries over to what follows in it.

An attacker who got past the login still has to change the email or place the orders, and those
events come without login evidence of their own. Each successful login's log-odds are kept per
session (or as the account's latest login when an event names no session) for `ttl_hours`;
account changes and orders in that session inherit `carry` times the positive part. An event
naming a session that is not known (its login expired, or never seen) inherits nothing, and is
not taken for the owner's own either.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from kabuguard.detectors.base import Evidence, Finding, duration_us, share


class SessionMemory(msgspec.Struct):
    sessions: dict[str, tuple[int, float]] = {}  # session_id -> (login ts_us, login llr)
    latest: tuple[int, float] = (0, 0.0)

    def risk(self, event: Any, ttl_us: int) -> float:
        """The llr of the login behind `event`'s session, 0 when unknown or expired; an event that
        names no session is taken to be in the account's latest one. A named session that is not
        known (expired and forgotten, or its login never seen) is no evidence either way: the
        latest login may be someone else's."""
        if event.session_id:
            opened = self.sessions.get(event.session_id)
            if opened is None:
                return 0.0
        else:
            opened = self.latest
        ts, llr = opened
        return llr if ts and event.ts_us - ts <= ttl_us else 0.0

    def open(self, event: Any, llr: float, ttl_us: int) -> None:
        if not event.success:
            return
        cutoff = event.ts_us - ttl_us
        # The oldest session first (min() in C): most logins expire nothing. A session opened
        # exactly a ttl ago is kept, as `risk` still reads it.
        if self.sessions and min(self.sessions.values())[0] < cutoff:
            self.sessions = {k: v for k, v in self.sessions.items() if v[0] >= cutoff}
        self.latest = (event.ts_us, llr)
        if event.session_id:
            self.sessions[event.session_id] = self.latest


class SessionRisk:
    name: ClassVar[str] = "risky_session"
    stage: ClassVar[str] = "final"
    types: ClassVar[frozenset[str]] = frozenset({"login", "account_change", "order"})

    def __init__(self, params: dict[str, Any]) -> None:
        self.ttl_us = duration_us(params, "ttl_hours", self.name)
        self.carry = share(params, "carry", self.name)

    def initial(self) -> SessionMemory:
        return SessionMemory()

    def score(self, event: Any, state: SessionMemory, ev: Evidence) -> None:
        if event.kind == "login":
            return
        llr = state.risk(event, self.ttl_us)
        if llr > 0:
            ev.findings.append(Finding(self.name, self.carry * llr))

    def learn(self, event: Any, state: SessionMemory, ev: Evidence) -> None:
        if event.kind == "login":
            state.open(event, ev.llr, self.ttl_us)
