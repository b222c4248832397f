"""Many accounts from one IP address: one operator driving many hijacked accounts.

Counts the distinct accounts that logged in or changed details from this address in a window.
Carriers put many customers behind one address (carrier-grade NAT on mobile and, ever more,
fixed lines: MAP-E, DS-Lite), so on an access network's address (not a hosting provider's) an
account counts only from a session that is not its owner's own recognised one (stage 1's
log-odds above `own_session_llr`), and only when those are at least `min_share` of all the
accounts the address served: most customers behind a carrier's address log in from a device
and network their account knows, where an operator of hijacked accounts is new to every one of
them. A hosting or VPN address serves no crowd of customers, so there every account counts: the
operator's own accounts, at home on its servers, do not dilute its victims. Mobile-only networks
are exempt outright. Known false positives: a household or office sharing one line (kept below
`min_accounts`); a shared address whose customers are mostly too new to be recognised; a VPN
service's exit. Known miss: an operator whose own accounts log in from the residential proxy it
hijacks through.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import msgspec

from kabuguard.detectors._window import others, prune, stamp, stamp_capped
from kabuguard.detectors.base import Evidence, Finding, count, duration_us, number, share
from kabuguard.events.model import account_key

# Accounts remembered per access network's address, of either kind: past this many the share
# test can pass only for an address whose counted accounts are a crowd themselves, and
# `shared_ip`'s weight stops growing (log 256/5 over its base). A carrier's address serving
# thousands a day keeps a few kilobytes of state, not one entry per customer.
CROWD_CAP = 256


class SharedKeyState(msgspec.Struct):
    accounts: dict[str, int] = {}  # account -> its last counted event on this key
    seen: dict[str, int] = {}  # on a crowd's address: account -> its last event of any session


class NetworkKey:
    """What a network identity's detectors ask of its key: whether it is never scored (`exempt`)
    and whether it may serve a crowd of customers, judged against everyone it serves (`crowd`,
    possible at all where `crowds`). A device is neither; an address may be (`Address`)."""

    crowds: ClassVar[bool] = False

    def exempt(self, ev: Evidence) -> bool:
        return False

    def crowd(self, ev: Evidence) -> bool:
        return False


class _ManyAccounts(NetworkKey):
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
        if self.crowds:
            self.min_share = share(params, "min_share", self.name)
            self.own_llr = number(params, "own_session_llr", self.name)

    @property
    def horizon_us(self) -> int:
        return self.window_us

    def latest_us(self, state: SharedKeyState) -> int:
        return max(max(state.accounts.values(), default=0), max(state.seen.values(), default=0))

    def initial(self) -> SharedKeyState:
        return SharedKeyState()

    def score(self, event: Any, state: SharedKeyState, ev: Evidence) -> None:
        if self.exempt(ev):
            return
        crowd = self.crowd(ev)
        if crowd and ev.session_llr <= self.own_llr:
            return
        cutoff, me = event.ts_us - self.window_us, account_key(event)
        count = others(state.accounts, cutoff, me) + 1
        if count >= self.min_accounts and (not crowd or count >= self.min_share * (others(state.seen, cutoff, me) + 1)):
            ev.findings.append(Finding(self.name, self.weight + math.log(count / self.min_accounts)))

    def learn(self, event: Any, state: SharedKeyState, ev: Evidence) -> None:
        if self.exempt(ev):  # never scored: a carrier's address would only pile up its customers
            return
        cutoff, me = event.ts_us - self.window_us, account_key(event)
        if not self.crowd(ev):
            state.accounts = prune(state.accounts, cutoff)
            stamp(state.accounts, me, event.ts_us)
            return
        state.seen = crowd_window(state.seen, me, event.ts_us, cutoff)
        if ev.session_llr > self.own_llr:
            state.accounts = crowd_window(state.accounts, me, event.ts_us, cutoff)


def crowd_window(window: dict[str, int], account: str, at: int, cutoff: int) -> dict[str, int]:
    """`window` with `account` stamped at `at`: an access network's address's window of accounts,
    pruned to `cutoff` and kept to `CROWD_CAP`."""
    window = prune(window, cutoff)
    stamp_capped(window, account, at, CROWD_CAP)
    return window


class Address(NetworkKey):
    """What an IP address's detectors share: a mobile carrier's or private address is never
    scored (thousands behind one NAT), and any other but a hosting provider's may be a carrier's
    shared address, judged against every account it serves (`crowd`)."""

    crowds: ClassVar[bool] = True

    def exempt(self, ev: Evidence) -> bool:
        return ev.net.kind in ("mobile", "private")

    def crowd(self, ev: Evidence) -> bool:
        return ev.net.kind != "hosting"


class SharedIp(Address, _ManyAccounts):
    name: ClassVar[str] = "shared_ip"
    stage: ClassVar[str] = "ip"
