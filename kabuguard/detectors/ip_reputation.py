"""IP reputation: an address that served risky sessions on other accounts taints what follows.

Attack infrastructure is shared: the proxies and servers that logged into one victim log into
the next, and the attackers' own accounts trade from them too. Per address, the accounts whose
sessions the account stage found risky are remembered for a window; a later login, change or
order from the address by another account inherits `weight` plus the log of how many. On an
access network's address (not a hosting provider's), only when they are at least `min_share` of
the accounts the address served in the window: a carrier's NAT address serves many customers, a
few of them risky on any day (a new phone, a trip), where a hosting address serves no crowd and
the attackers' own accounts at home on it must not dilute its victims. There both windows keep
only the latest 256 accounts (`shared_ip.CROWD_CAP`), and only the risky accounts among those
served are counted: both sides of the share are one population, and the weight grows to at most
`weight` + log 256. It is learnt online from earlier events only. Known false positives: a café
hotspot, a household one of whose members was phished (mobile-only networks are exempt).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import msgspec

from kabuguard.detectors._window import others, prune, stamp
from kabuguard.detectors.base import Evidence, Finding, duration_us, number, share
from kabuguard.detectors.shared_ip import Address, NetworkKey, crowd_window
from kabuguard.events.model import account_key


class ReputationState(msgspec.Struct):
    risky: dict[str, int] = {}  # account -> last risky session seen on this key
    seen: dict[str, int] = {}  # on a crowd's address: account -> its last event of any session


class _Reputation(NetworkKey):
    """Risky sessions of other accounts seen on one network identity."""

    name: ClassVar[str]
    stage: ClassVar[str]
    types: ClassVar[frozenset[str]] = frozenset({"login", "account_change", "order"})

    def __init__(self, params: dict[str, Any]) -> None:
        self.window_us = duration_us(params, "window_days", self.name)
        self.risky_llr = number(params, "risky_session_llr", self.name)
        self.weight = number(params, "weight", self.name)
        if self.crowds:
            self.min_share = share(params, "min_share", self.name)

    @property
    def horizon_us(self) -> int:
        return self.window_us

    def latest_us(self, state: ReputationState) -> int:
        return max(max(state.risky.values(), default=0), max(state.seen.values(), default=0))

    def initial(self) -> ReputationState:
        return ReputationState()

    def score(self, event: Any, state: ReputationState, ev: Evidence) -> None:
        if not state.risky or self.exempt(ev):
            return
        cutoff, me = event.ts_us - self.window_us, account_key(event)
        if not self.crowd(ev):
            count = others(state.risky, cutoff, me)
        else:
            count = self._risky_served(state, cutoff, me)
            if count < self.min_share * others(state.seen, cutoff, me):
                return
        if count:
            ev.findings.append(Finding(self.name, self.weight + math.log(count)))

    @staticmethod
    def _risky_served(state: ReputationState, cutoff: int, me: str) -> int:
        """Accounts other than `me` risky since `cutoff` among those a crowd's address still keeps
        as served (its latest `shared_ip.CROWD_CAP`): both sides of the share count one population."""
        seen = state.seen
        return sum(1 for account, at in state.risky.items()
                   if at > cutoff and seen.get(account, cutoff) > cutoff and account != me)

    def learn(self, event: Any, state: ReputationState, ev: Evidence) -> None:
        if self.exempt(ev):  # never scored: a carrier's address would only pile up its customers
            return
        cutoff, me = event.ts_us - self.window_us, account_key(event)
        crowd = self.crowd(ev)
        if crowd:
            state.seen = crowd_window(state.seen, me, event.ts_us, cutoff)
        if ev.session_llr < self.risky_llr:
            return
        if crowd:
            state.risky = crowd_window(state.risky, me, event.ts_us, cutoff)
        else:
            state.risky = prune(state.risky, cutoff)
            stamp(state.risky, me, event.ts_us)


class IpReputation(Address, _Reputation):
    name: ClassVar[str] = "ip_reputation"
    stage: ClassVar[str] = "ip"
