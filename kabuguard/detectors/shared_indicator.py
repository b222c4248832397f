"""Shared indicators: an address, device, network, browser or phishing site another firm reported.

In 2025 the same campaign hit nine firms one after another; what the first firm established
(the attackers' addresses, their tooling's user agent, the phishing domain its customers came
from) is evidence at the next. Indicators arrive as `indicator` events, each routed to the
stage that owns its key: addresses to the ip stage, device fingerprints to the device stage,
and networks (AS names), user agents, domains and URLs to the `intel` stage, which has one key
because a login carries several of them. Each stage remembers the arrival time of the
indicators it owns and, for a later login, account change or order that matches one, adds the
policy's weight for that indicator type (the strongest match per stage). An indicator counts
from its arrival until `max_age_days` later, never before it arrived, and never at or after its
`valid_until`: a later line of the same value whose `valid_until` has passed (`intel pull`
writes one for a revoked indicator) withdraws it from its own arrival on. The latest line of a
value decides: a withdrawal by one sharer ends the value until another's line arrives after it.

Known false positives: a carrier NAT or café address an attacker also used (private addresses
are exempt, mobile ones are not), a common user agent or a large cloud AS shared as an
indicator (hence their low weights), a customer who reached the firm through a link a phishing
page forwarded to.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar
from urllib.parse import urlsplit

import msgspec

from kabuguard.detectors.base import Evidence, Finding, duration_us, number, param
from kabuguard.events.instants import parse_ts

# The `intel` stage's one key: its indicators are few and every login may match several.
INTEL_KEY = "shared"
# The indicator types each stage owns.
NETWORK_TYPES = frozenset({"asn", "user_agent", "domain", "url"})


class IndicatorState(msgspec.Struct):
    # "type:value" -> when its `max_age` window starts (µs): its arrival, or earlier so that the
    # window ends before its `valid_until`. The latest line of a value counts.
    arrived: dict[str, int] = {}


class _SharedIndicator:
    """Matches an event's identities against indicators that arrived before it."""

    name: ClassVar[str] = "shared_indicator"
    stage: ClassVar[str]
    owns: ClassVar[frozenset[str]]
    types: ClassVar[frozenset[str]] = frozenset({"login", "account_change", "order", "indicator"})

    def __init__(self, params: dict[str, Any]) -> None:
        self.max_age_us = duration_us(params, "max_age_days", self.name)
        weights = param(params, "weights", self.name)
        missing = sorted(self.owns - set(weights))
        if missing:
            raise KeyError(f"policy: detector `{self.name}` needs `weights` for {', '.join(missing)}")
        self.weights = {kind: number(weights, kind, f"{self.name}.weights") for kind in self.owns}

    @property
    def horizon_us(self) -> int:
        return self.max_age_us  # an indicator counts until it is this old (its arrival is an event of the key)

    def latest_us(self, state: IndicatorState) -> int:
        return max(state.arrived.values(), default=0)

    def initial(self) -> IndicatorState:
        return IndicatorState()

    def identities(self, event: Any, ev: Evidence) -> Iterator[tuple[str, str]]:
        """The (indicator type, value) pairs of an activity event this stage can match."""
        raise NotImplementedError

    def score(self, event: Any, state: IndicatorState, ev: Evidence) -> None:
        if event.kind == "indicator" or not state.arrived:
            return
        since = event.ts_us - self.max_age_us
        best = 0.0
        for kind, value in self.identities(event, ev):
            arrived = state.arrived.get(f"{kind}:{value}")
            if arrived is not None and arrived >= since:
                best = max(best, self.weights[kind])
        if best:
            ev.findings.append(Finding(self.name, best))

    def learn(self, event: Any, state: IndicatorState, ev: Evidence) -> None:
        if event.kind != "indicator":
            return
        since = event.ts_us - self.max_age_us
        state.arrived = {k: t for k, t in state.arrived.items() if t >= since}
        state.arrived[f"{event.indicator_type}:{event.value}"] = self._window_start(event)

    def _window_start(self, event: Any) -> int:
        """The arrival, moved back when `valid_until` comes before `max_age` ends: one number per
        value keeps both limits (the state's format is unchanged), and `score` stays one comparison."""
        if not event.valid_until:
            return event.ts_us
        return min(event.ts_us, parse_ts(event.valid_until, "valid_until") - 1 - self.max_age_us)


class SharedIndicatorIp(_SharedIndicator):
    stage: ClassVar[str] = "ip"
    owns: ClassVar[frozenset[str]] = frozenset({"ip"})

    def identities(self, event: Any, ev: Evidence) -> Iterator[tuple[str, str]]:
        if ev.net.kind != "private":
            yield "ip", event.ip


class SharedIndicatorDevice(_SharedIndicator):
    stage: ClassVar[str] = "device"
    owns: ClassVar[frozenset[str]] = frozenset({"device"})

    def identities(self, event: Any, ev: Evidence) -> Iterator[tuple[str, str]]:
        yield "device", event.device_id


class SharedIndicatorNetwork(_SharedIndicator):
    """AS names, user agents and the site a login came from: the `intel` stage's one key."""

    stage: ClassVar[str] = "intel"
    owns: ClassVar[frozenset[str]] = NETWORK_TYPES

    def identities(self, event: Any, ev: Evidence) -> Iterator[tuple[str, str]]:
        if ev.net.asn:
            yield "asn", ev.net.asn
        if event.kind != "login":
            return
        if event.user_agent:
            yield "user_agent", event.user_agent
        if event.referrer:
            yield "url", event.referrer
            for domain in parent_domains(event.referrer):
                yield "domain", domain


def intel_key(event: Any) -> str | None:
    """The `intel` stage's key: every activity event, and the indicators that stage owns."""
    if event.kind == "indicator" and event.indicator_type not in NETWORK_TYPES:
        return None
    return INTEL_KEY


def parent_domains(url: str) -> list[str]:
    """The host of `url` and every parent domain of it (`a.b.example` -> b.example, example); none
    when `url` has no host that can be read (a referrer is what the client's browser says)."""
    try:
        host = (urlsplit(url if "//" in url else f"//{url}").hostname or "").rstrip(".")
    except ValueError:  # `http://[fe80::1/login`: an unclosed IPv6 bracket
        return []
    labels = host.split(".")
    return [".".join(labels[i:]) for i in range(len(labels))] if host else []
