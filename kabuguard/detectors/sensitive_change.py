"""Sensitive account change: contact details, MFA or bank account changed, and what follows.

Attackers change the email, phone or MFA first, so that alerts and one-time codes reach them,
then trade later ("change first"). A sensitive change is modest evidence on its own; from a
risky session it is decisive, and orders in the days after a risky change inherit suspicion.
Known false positives: a customer who changed phone and number on the same day.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from kabuguard.detectors.base import Evidence, Finding, param


class ChangeState(msgspec.Struct):
    risky_change_us: int = 0


class SensitiveChange:
    name: ClassVar[str] = "sensitive_change"
    stage: ClassVar[str] = "final"
    types: ClassVar[frozenset[str]] = frozenset({"account_change", "order"})

    def __init__(self, params: dict[str, Any]) -> None:
        self.field_weights = {str(k): float(v) for k, v in param(params, "field_weights", self.name).items()}
        self.risky_llr = float(param(params, "risky_llr", self.name))
        self.after_us = int(float(param(params, "after_days", self.name)) * 86_400_000_000)
        self.after_weight = float(param(params, "after_weight", self.name))

    def initial(self) -> ChangeState:
        return ChangeState()

    def score(self, event: Any, state: ChangeState, ev: Evidence) -> None:
        if event.kind == "account_change":
            weight = self.field_weights.get(event.field, 0.0)
            if weight:
                ev.findings.append(Finding(self.name, weight))
        elif state.risky_change_us and event.ts_us - state.risky_change_us <= self.after_us:
            ev.findings.append(Finding("order_after_risky_change", self.after_weight))

    def learn(self, event: Any, state: ChangeState, ev: Evidence) -> None:
        if event.kind == "account_change" and event.field in self.field_weights and ev.llr >= self.risky_llr:
            state.risky_change_us = event.ts_us
