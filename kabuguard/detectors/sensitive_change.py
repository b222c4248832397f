"""Sensitive account change: contact details, MFA or bank account changed, and what follows.

Attackers change the email, phone or MFA first, so that alerts and one-time codes reach them,
then trade later ("change first"). A sensitive change is modest evidence on its own; several
within hours (taking over every channel) or from a risky session are more, and orders in the
days after inherit the change's evidence (`carry` times its log-odds), unless they come from a
session that stage 1 recognises as the owner's own (its login's log-odds at most `own_session_llr`).
Known false positives: a customer who changed phone and number on the same day.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import msgspec

from kabuguard.detectors.base import Evidence, Finding, param


class ChangeState(msgspec.Struct):
    changes: list[tuple[int, float]] = []  # (ts_us, the change's llr) of recent sensitive changes


class SensitiveChange:
    name: ClassVar[str] = "sensitive_change"
    stage: ClassVar[str] = "final"
    types: ClassVar[frozenset[str]] = frozenset({"account_change", "order"})

    def __init__(self, params: dict[str, Any]) -> None:
        self.field_weights = {str(k): float(v) for k, v in param(params, "field_weights", self.name).items()}
        self.burst_us = int(float(param(params, "burst_hours", self.name)) * 3_600_000_000)
        self.after_us = int(float(param(params, "after_days", self.name)) * 86_400_000_000)
        self.carry = float(param(params, "carry", self.name))
        self.own_session_llr = float(param(params, "own_session_llr", self.name))

    def initial(self) -> ChangeState:
        return ChangeState()

    def score(self, event: Any, state: ChangeState, ev: Evidence) -> None:
        recent = [(t, llr) for t, llr in state.changes if event.ts_us - t <= self.after_us]
        if event.kind == "account_change":
            weight = self.field_weights.get(event.field, 0.0)
            if weight:
                # Each further change in the burst window doubles the odds: all channels at once.
                burst = sum(1 for t, _ in recent if event.ts_us - t <= self.burst_us)
                ev.findings.append(Finding(self.name, weight + burst * math.log(2)))
        elif recent and ev.session_llr > self.own_session_llr:
            llr = max(llr for _, llr in recent)
            if llr > 0:
                ev.findings.append(Finding("order_after_risky_change", self.carry * llr))

    def learn(self, event: Any, state: ChangeState, ev: Evidence) -> None:
        if event.kind == "account_change" and event.field in self.field_weights:
            cutoff = event.ts_us - self.after_us
            state.changes = [c for c in state.changes if c[0] > cutoff] + [(event.ts_us, ev.llr)]
