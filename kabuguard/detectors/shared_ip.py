"""Many accounts from one IP address: one operator driving many hijacked accounts.

Counts the distinct accounts that logged in or changed details from this address in a window,
each from a session that is not its owner's own recognised one (stage 1's log-odds above
`own_session_llr`), when they are at least `min_share` of all the accounts the address served:
carriers put many customers behind one address (carrier-grade NAT on mobile and, ever more,
fixed lines), most of whom log in there from a device and network their account knows, where
an operator of hijacked accounts is new to every one of them. Mobile-only networks are exempt
outright. Known false positives: a household or office sharing one line (kept below
`min_accounts`); a shared address whose customers are mostly too new to be recognised.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import msgspec

from kabuguard.detectors._window import others, prune, stamp
from kabuguard.detectors.base import Evidence, Finding, count, duration_us, number
from kabuguard.events.model import account_key


class SharedKeyState(msgspec.Struct):
    accounts: dict[str, int] = {}  # account -> last session not its owner's own on this key
    seen: dict[str, int] = {}  # account -> last event of any session on this key


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
        self.min_share = number(params, "min_share", self.name)
        self.own_llr = number(params, "own_session_llr", self.name)

    @property
    def horizon_us(self) -> int:
        return self.window_us

    def latest_us(self, state: SharedKeyState) -> int:
        return max(state.seen.values(), default=0)

    def initial(self) -> SharedKeyState:
        return SharedKeyState()

    def exempt(self, ev: Evidence) -> bool:
        return False

    def score(self, event: Any, state: SharedKeyState, ev: Evidence) -> None:
        if ev.session_llr <= self.own_llr or self.exempt(ev):
            return
        cutoff, me = event.ts_us - self.window_us, account_key(event)
        count = others(state.accounts, cutoff, me) + 1
        if count >= self.min_accounts and count >= self.min_share * (others(state.seen, cutoff, me) + 1):
            ev.findings.append(Finding(self.name, self.weight + math.log(count / self.min_accounts)))

    def learn(self, event: Any, state: SharedKeyState, ev: Evidence) -> None:
        if self.exempt(ev):  # never scored: a carrier's address would only pile up its customers
            return
        cutoff, me = event.ts_us - self.window_us, account_key(event)
        state.seen = prune(state.seen, cutoff)
        stamp(state.seen, me, event.ts_us)
        if ev.session_llr > self.own_llr:
            state.accounts = prune(state.accounts, cutoff)
            stamp(state.accounts, me, event.ts_us)


class SharedIp(_ManyAccounts):
    name: ClassVar[str] = "shared_ip"
    stage: ClassVar[str] = "ip"

    def exempt(self, ev: Evidence) -> bool:
        return ev.net.kind in ("mobile", "private")
