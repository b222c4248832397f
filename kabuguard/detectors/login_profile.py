"""Login profile: how likely this login's device, network, agent and hour are for this account.

A likelihood ratio between two hypotheses, summed over attributes (naive Bayes, as in Freeman
et al., "Who Are You? A Statistical Approach to Measuring User Authenticity", NDSS 2016):
the account's own habit, a Dirichlet-smoothed distribution over the values it has used
(a new value has probability alpha / (n + alpha) after n logins), against a takeover, which
shows a value new to the account with probability `p_new_attack`. A long, stable history makes
a new device strong evidence; an account with no history gives none. Network attributes back
off from coarse to fine (country, then AS, then the /24) so one move is not counted thrice.

Naive Bayes treats the attributes as independent; for customers they are not. A customer's new
phone comes on the home network, a trip abroad on the usual phone: one thing changes at a time.
A login on a device *and* a fixed-line or hosting network both new to an account with a history
(`unfamiliar_login`), the more so in a browser family the account never used, is what a stolen
password used from someone else's machine looks like, residential proxy or not. Mobile networks
are left out: customers roam between carriers' addresses on their own phones.

The profile learns a login only after a probation period, and never one whose session changed
email, phone, MFA or password, or one that was itself risky: an attacker who logs in once from
a fresh device must not have that device trusted by the time the trading starts.

>>> from kabuguard.detectors.login_profile import user_agent_family
>>> user_agent_family("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36")
'chrome/windows'
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, ClassVar

import msgspec

from kabuguard.detectors.base import (Evidence, Finding, count, duration_us, names, number, param, positive,
                                      probability)
from kabuguard.events.model import CHANGE_FIELDS

_BROWSERS = (("edg/", "edge"), ("firefox/", "firefox"), ("opr/", "opera"), ("chrome/", "chrome"),
             ("crios/", "chrome"), ("safari/", "safari"))
_SYSTEMS = (("iphone", "ios"), ("ipad", "ios"), ("android", "android"), ("windows", "windows"),
            ("mac os x", "macos"), ("cros", "chromeos"), ("linux", "linux"))


@lru_cache(maxsize=65536)
def user_agent_family(agent: str) -> str:
    """Browser (or app) and operating system, without versions, which change on every update."""
    low = agent.lower()
    browser = next((name for token, name in _BROWSERS if token in low), None)
    if browser is None:
        browser = low.split("/", 1)[0].strip() or "unknown"
    system = next((name for token, name in _SYSTEMS if token in low), "other")
    return f"{browser}/{system}"


class PendingLogin(msgspec.Struct, array_like=True):
    ts_us: int
    session_id: str
    device: str
    country: str
    asn: str
    prefix: str
    agent: str
    hour: int


class LoginProfileState(msgspec.Struct):
    logins: int = 0
    pending: list[PendingLogin] = []
    devices: dict[str, int] = {}
    countries: dict[str, int] = {}
    asns: dict[str, int] = {}
    prefixes: dict[str, int] = {}
    agents: dict[str, int] = {}
    hours: list[int] = msgspec.field(default_factory=lambda: [0] * 24)


class _Attribute:
    """One attribute's smoothing and takeover prior, read from the policy."""

    __slots__ = ("reason", "alpha", "discount", "log_p_new", "log_p_known", "min_weight")

    def __init__(self, reason: str, conf: dict[str, float]) -> None:
        self.reason = reason
        try:
            self.alpha = positive(conf, "alpha", "login_profile")
            self.discount = number(conf, "discount", "login_profile", 0.0, 1.0, below_high=True) if "discount" in conf else 0.0
            p_new = probability(conf, "p_new_attack", "login_profile")
        except ValueError as exc:  # which of the five attributes
            raise ValueError(f"{reason}: {exc}") from None
        self.log_p_new = math.log(p_new)
        self.log_p_known = math.log(1.0 - p_new)

    def llr(self, counts: dict[str, int], value: str, n: int) -> float:
        if counts.get(value, 0) == 0:
            # The customer's own chance of a new value (Pitman-Yor): more for one who has shown
            # many (`discount` per value seen: a phone on a new mobile address every login).
            return self.log_p_new - math.log((self.alpha + self.discount * len(counts)) / (n + self.alpha))
        # A value the account has used: the attacker would have had to land on it by chance.
        return self.log_p_known + math.log((n + self.alpha) / n)


class LoginProfile:
    name: ClassVar[str] = "login_profile"
    stage: ClassVar[str] = "account"
    types: ClassVar[frozenset[str]] = frozenset({"login", "account_change"})

    def __init__(self, params: dict[str, Any]) -> None:
        self.probation_us = duration_us(params, "probation_hours", self.name)
        self.distrusting = names(params, "distrust_on_change", self.name, CHANGE_FIELDS)
        attrs = param(params, "attributes", self.name)
        where = f"{self.name}.attributes"  # a missing one is named with its section
        self.device = _Attribute("new_device", param(attrs, "device", where))
        self.country = _Attribute("new_country", param(attrs, "country", where))
        self.asn = _Attribute("new_asn", param(attrs, "asn", where))
        self.prefix = _Attribute("new_ip_range", param(attrs, "ip_range", where))
        self.agent = _Attribute("new_user_agent", param(attrs, "user_agent", where))
        self.hour_min_logins = count(params, "hour_min_logins", self.name, minimum=0)
        self.hour_alpha = positive(params, "hour_alpha", self.name)
        self.learn_max_llr = number(params, "learn_max_llr", self.name)
        # The firm's local time, to the minute (India is 5:30 ahead of UTC); optional, as policies
        # from before it was added are Japanese firms'.
        offset = number(params, "local_utc_offset_hours", self.name, -12.0, 14.0) if "local_utc_offset_hours" in params else 9
        self.tz_offset_us = int(offset * 3_600_000_000)
        unfamiliar = param(params, "unfamiliar", self.name)
        where = f"{self.name}.unfamiliar"
        self.unfamiliar_min_logins = count(unfamiliar, "min_logins", where, minimum=0)
        self.unfamiliar_weight = number(unfamiliar, "weight", where)
        self.unfamiliar_agent_weight = number(unfamiliar, "new_agent_weight", where)

    def initial(self) -> LoginProfileState:
        return LoginProfileState()

    def score(self, event: Any, state: LoginProfileState, ev: Evidence) -> None:
        if event.kind != "login":
            return
        self._promote(state, event.ts_us - self.probation_us)
        n = state.logins
        found = ev.findings
        new_device = bool(event.device_id) and state.devices.get(event.device_id, 0) == 0
        if event.device_id:
            found.append(Finding(self.device.reason, self.device.llr(state.devices, event.device_id, n)))
        net = ev.net
        new_network = False
        if net.country:
            if state.countries.get(net.country, 0) == 0:
                new_network = True
                found.append(Finding(self.country.reason, self.country.llr(state.countries, net.country, n)))
            elif net.asn and state.asns.get(net.asn, 0) == 0:
                new_network = True
                found.append(Finding(self.asn.reason, self.asn.llr(state.asns, net.asn, n)))
            elif net.prefix:
                found.append(Finding(self.prefix.reason, self.prefix.llr(state.prefixes, net.prefix, n)))
        new_agent = False
        if event.user_agent:
            family = user_agent_family(event.user_agent)
            new_agent = state.agents.get(family, 0) == 0
            found.append(Finding(self.agent.reason, self.agent.llr(state.agents, family, n)))
        if new_device and new_network and n >= self.unfamiliar_min_logins and net.kind in ("fixed", "hosting"):
            weight = self.unfamiliar_weight + (self.unfamiliar_agent_weight if new_agent else 0.0)
            found.append(Finding("unfamiliar_login", weight))
        if n >= self.hour_min_logins:
            found.append(Finding("unusual_hour", self._hour_llr(state, self._hour(event.ts_us), n)))

    def learn(self, event: Any, state: LoginProfileState, ev: Evidence) -> None:
        if event.kind == "account_change":
            if event.field in self.distrusting:
                # A change naming no session may have come from any login still on probation
                # (an export without session ids): none of them becomes habit. Those whose
                # probation ended before it are habit already, whenever a login comes to say so.
                self._promote(state, event.ts_us - self.probation_us)
                state.pending = [p for p in state.pending if event.session_id and p.session_id != event.session_id]
            return
        if not event.success or ev.session_llr > self.learn_max_llr:
            return
        net = ev.net
        agent = user_agent_family(event.user_agent) if event.user_agent else ""
        state.pending.append(PendingLogin(event.ts_us, event.session_id or "", event.device_id or "",
                                          net.country, net.asn, net.prefix, agent, self._hour(event.ts_us)))

    def _promote(self, state: LoginProfileState, cutoff: int) -> None:
        """Logins past probation (at or before `cutoff`) become the customer's habit; promoted
        lazily, when a login is scored or a change distrusts what is still pending."""
        if not state.pending or state.pending[0].ts_us > cutoff:
            return
        keep = []
        for p in state.pending:
            if p.ts_us > cutoff:
                keep.append(p)
                continue
            state.logins += 1
            for counts, value in ((state.devices, p.device), (state.countries, p.country),
                                  (state.asns, p.asn), (state.prefixes, p.prefix), (state.agents, p.agent)):
                if value:
                    counts[value] = counts.get(value, 0) + 1
            state.hours[p.hour] += 1
        state.pending = keep

    def _hour(self, ts_us: int) -> int:
        return (ts_us + self.tz_offset_us) // 3_600_000_000 % 24

    def _hour_llr(self, state: LoginProfileState, hour: int, n: int) -> float:
        hours = state.hours
        # Habits blur across neighbouring hours; a login at 21:10 by a 20:00 regular is normal.
        near = hours[hour] + 0.5 * (hours[hour - 1] + hours[(hour + 1) % 24])
        p_own = (near + self.hour_alpha / 24) / (2 * n + self.hour_alpha)
        return math.log(1 / 24) - math.log(p_own)
