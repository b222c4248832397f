"""Credential stuffing source: an address with failed logins on many different accounts.

Replaying a leaked or phished list shows as failures spread over many accounts from few
addresses; any login from such an address, above all a success, is suspect. When an address
first crosses the threshold it raises a `campaign_alert` naming it and the accounts it tried,
so the team hears of the attack while it is still failing. Known false positives: a carrier NAT
address (exempt when mobile-only), a corporate proxy.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import msgspec

from kabuguard.detectors._window import others, prune, stamp
from kabuguard.detectors.base import Evidence, Finding, count, duration_us, number
from kabuguard.events.model import account_key


class StuffingState(msgspec.Struct):
    failed: dict[str, int] = {}
    alerted_us: int = 0


class CredentialStuffing:
    name: ClassVar[str] = "credential_stuffing"
    stage: ClassVar[str] = "ip"
    types: ClassVar[frozenset[str]] = frozenset({"login"})

    def __init__(self, params: dict[str, Any]) -> None:
        self.window_us = duration_us(params, "window_minutes", self.name)
        self.min_accounts = count(params, "min_accounts", self.name)
        self.weight = number(params, "weight", self.name)

    @property
    def horizon_us(self) -> int:
        return self.window_us

    def latest_us(self, state: StuffingState) -> int:
        return max(max(state.failed.values(), default=0), state.alerted_us)  # an old `alerted_us` acts as 0

    def initial(self) -> StuffingState:
        return StuffingState()

    def score(self, event: Any, state: StuffingState, ev: Evidence) -> None:
        if ev.net.kind in ("mobile", "private"):
            return
        cutoff = event.ts_us - self.window_us
        key = account_key(event)
        count = others(state.failed, cutoff, key)
        if count >= self.min_accounts:
            ev.findings.append(Finding(self.name, self.weight + math.log(count / self.min_accounts)))
        if count + (not event.success) >= self.min_accounts and state.alerted_us <= cutoff:
            accounts = sorted({a for a, t in state.failed.items() if t > cutoff} | ({key} if not event.success else set()))
            ev.alerts.append({
                "type": "campaign_alert", "campaign_id": f"stuffing-{event.event_id}", "accounts": accounts,
                "symbols": [], "ips": [event.ip], "score": round(min(1.0, len(accounts) / (4 * self.min_accounts)), 4),
                "reasons": [self.name],
            })

    def learn(self, event: Any, state: StuffingState, ev: Evidence) -> None:
        state.failed = prune(state.failed, event.ts_us - self.window_us)
        if not event.success:
            stamp(state.failed, account_key(event), event.ts_us)
        if any(a["reasons"] == [self.name] for a in ev.alerts):
            state.alerted_us = event.ts_us
