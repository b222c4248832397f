"""Hosting or anonymising network: a login from a cloud, VPS or data-centre address.

Customers log in from home broadband and mobile carriers; the 2025 attackers' tooling ran on
rented servers. The weight is the log of how much likelier hosting is under takeover than for
a customer, and it fades for an account that habitually uses such networks (a VPN, a bot).
Known false positives: corporate VPNs egressing from a cloud, privacy relays.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import msgspec

from kabuguard.detectors.base import Evidence, Finding, number, positive, probability


class HostingState(msgspec.Struct):
    logins: int = 0
    hosting: int = 0


class HostingNetwork:
    name: ClassVar[str] = "hosting_network"
    stage: ClassVar[str] = "account"
    types: ClassVar[frozenset[str]] = frozenset({"login"})

    def __init__(self, params: dict[str, Any]) -> None:
        p_attack = probability(params, "p_hosting_attack", self.name)
        self.p_customer = probability(params, "p_hosting_customer", self.name)
        self.log_p_attack = math.log(p_attack)
        self.alpha = positive(params, "alpha", self.name)
        self.learn_max_llr = number(params, "learn_max_llr", self.name)

    def initial(self) -> HostingState:
        return HostingState()

    def score(self, event: Any, state: HostingState, ev: Evidence) -> None:
        if ev.net.kind != "hosting":
            return
        # The account's own rate of hosting logins, shrunk towards the population's.
        own = (state.hosting + self.alpha * self.p_customer) / (state.logins + self.alpha)
        ev.findings.append(Finding(self.name, self.log_p_attack - math.log(own)))

    def learn(self, event: Any, state: HostingState, ev: Evidence) -> None:
        # A risky login must not teach the account that hosting networks are its habit.
        if event.success and ev.session_llr <= self.learn_max_llr:
            state.logins += 1
            state.hosting += ev.net.kind == "hosting"
