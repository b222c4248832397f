"""IP reputation: an address that served risky sessions on other accounts taints what follows.

Attack infrastructure is shared: the proxies and servers that logged into one victim log into
the next, and the attackers' own accounts trade from them too. Per address, the accounts whose
sessions the account stage found risky are remembered for a window; a later login, change or
order from the address by another account inherits `weight` plus the log of how many. It is
learnt online from earlier events only. Known false positives: a carrier NAT address shared
with a victim (mobile-only networks are exempt), a café hotspot.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import msgspec

from kabuguard.detectors._window import others, prune, stamp
from kabuguard.detectors.base import Evidence, Finding, duration_us, number
from kabuguard.events.model import account_key


class ReputationState(msgspec.Struct):
    risky: dict[str, int] = {}  # account -> last risky session seen on this key


class _Reputation:
    """Risky sessions of other accounts seen on one network identity."""

    name: ClassVar[str]
    stage: ClassVar[str]
    types: ClassVar[frozenset[str]] = frozenset({"login", "account_change", "order"})

    def __init__(self, params: dict[str, Any]) -> None:
        self.window_us = duration_us(params, "window_days", self.name)
        self.risky_llr = number(params, "risky_session_llr", self.name)
        self.weight = number(params, "weight", self.name)

    @property
    def horizon_us(self) -> int:
        return self.window_us

    def latest_us(self, state: ReputationState) -> int:
        return max(state.risky.values(), default=0)

    def initial(self) -> ReputationState:
        return ReputationState()

    def exempt(self, ev: Evidence) -> bool:
        return False

    def score(self, event: Any, state: ReputationState, ev: Evidence) -> None:
        if not state.risky or self.exempt(ev):
            return
        count = others(state.risky, event.ts_us - self.window_us, account_key(event))
        if count:
            ev.findings.append(Finding(self.name, self.weight + math.log(count)))

    def learn(self, event: Any, state: ReputationState, ev: Evidence) -> None:
        if ev.session_llr >= self.risky_llr:
            state.risky = prune(state.risky, event.ts_us - self.window_us)
            stamp(state.risky, account_key(event), event.ts_us)


class IpReputation(_Reputation):
    name: ClassVar[str] = "ip_reputation"
    stage: ClassVar[str] = "ip"

    def exempt(self, ev: Evidence) -> bool:
        return ev.net.kind in ("mobile", "private")
