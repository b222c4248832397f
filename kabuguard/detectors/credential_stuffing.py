"""Credential stuffing source: an address with failed logins on many different accounts.

Replaying a leaked or phished list shows as failures spread over many accounts from few
addresses; any login from such an address, above all a success, is suspect. Known false
positives: a carrier NAT address (exempt when mobile-only), a corporate proxy.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import msgspec

from kabuguard.detectors._window import others, prune
from kabuguard.detectors.base import Evidence, Finding, param


class StuffingState(msgspec.Struct):
    failed: dict[str, int] = {}


class CredentialStuffing:
    name: ClassVar[str] = "credential_stuffing"
    stage: ClassVar[str] = "ip"
    types: ClassVar[frozenset[str]] = frozenset({"login"})

    def __init__(self, params: dict[str, Any]) -> None:
        self.window_us = int(float(param(params, "window_minutes", self.name)) * 60_000_000)
        self.min_accounts = int(param(params, "min_accounts", self.name))
        self.weight = float(param(params, "weight", self.name))

    def initial(self) -> StuffingState:
        return StuffingState()

    def score(self, event: Any, state: StuffingState, ev: Evidence) -> None:
        if ev.net.kind in ("mobile", "private"):
            return
        count = others(state.failed, event.ts_us - self.window_us, event.account_id)
        if count >= self.min_accounts:
            ev.findings.append(Finding(self.name, self.weight + math.log(count / self.min_accounts)))

    def learn(self, event: Any, state: StuffingState, ev: Evidence) -> None:
        state.failed = prune(state.failed, event.ts_us - self.window_us)
        if not event.success:
            state.failed[event.account_id] = event.ts_us
