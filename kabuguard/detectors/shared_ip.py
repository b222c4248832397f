"""Many accounts from one IP address: one operator driving many hijacked accounts.

Counts the distinct accounts that logged in or changed details from this address in a window. Mobile
carriers put thousands of customers behind one NAT address, so mobile-only networks are exempt.
Known false positives: a household or office sharing one line (kept below `min_accounts`).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import msgspec

from kabuguard.detectors._window import others, prune, stamp
from kabuguard.detectors.base import Evidence, Finding, count, duration_us, number
from kabuguard.events.model import account_key


class SharedKeyState(msgspec.Struct):
    accounts: dict[str, int] = {}


class _ManyAccounts:
    """Distinct accounts per network identity (an IP or a device) in a sliding window; an account
    is its firm and id, so two firms' customers with the same id are two accounts in a pooled feed."""

    name: ClassVar[str]
    stage: ClassVar[str]
    # Logins and account changes: orders come inside sessions those already counted.
    types: ClassVar[frozenset[str]] = frozenset({"login", "account_change"})

    def __init__(self, params: dict[str, Any]) -> None:
        self.window_us = duration_us(params, "window_hours", self.name)
        self.min_accounts = count(params, "min_accounts", self.name)
        self.weight = number(params, "weight", self.name)

    @property
    def horizon_us(self) -> int:
        return self.window_us

    def latest_us(self, state: SharedKeyState) -> int:
        return max(state.accounts.values(), default=0)

    def initial(self) -> SharedKeyState:
        return SharedKeyState()

    def exempt(self, ev: Evidence) -> bool:
        return False

    def score(self, event: Any, state: SharedKeyState, ev: Evidence) -> None:
        if self.exempt(ev):
            return
        count = others(state.accounts, event.ts_us - self.window_us, account_key(event)) + 1
        if count >= self.min_accounts:
            ev.findings.append(Finding(self.name, self.weight + math.log(count / self.min_accounts)))

    def learn(self, event: Any, state: SharedKeyState, ev: Evidence) -> None:
        state.accounts = prune(state.accounts, event.ts_us - self.window_us)
        stamp(state.accounts, account_key(event), event.ts_us)


class SharedIp(_ManyAccounts):
    name: ClassVar[str] = "shared_ip"
    stage: ClassVar[str] = "ip"

    def exempt(self, ev: Evidence) -> bool:
        return ev.net.kind in ("mobile", "private")
