"""Sensitive account change: contact details, MFA or bank account changed, and what follows.

Attackers change the email, phone or MFA first, so that alerts and one-time codes reach them,
then trade later ("change first"). A sensitive change is modest evidence on its own; several
within hours (taking over every channel) or from a risky session are more, and orders in the
days after inherit the change's evidence (`carry` times its log-odds), unless they come from a
session that stage 1 recognises as the owner's own (its login's log-odds at most `own_session_llr`).

Contact takeover: the change that completes a set of `contact_fields` (email and phone: every
channel the firm warns the owner on) within `burst_hours`, from a session that is not the owner's
own, scores `contact_takeover` as well. Customers change one contact at a time; whoever means to
trade behind the owner's back must redirect both, or the owner is told. An account with little
login history gives its login no evidence either way, so on such an account this is the only
evidence the session has, and it is carried into the orders that follow. Known false positives:
a customer who changed phone and number on the same day; one who moved carrier and e-mail
provider at once from a new device.

    >>> from kabuguard.detectors.base import Evidence
    >>> from kabuguard.events.reader import event_from_dict
    >>> from kabuguard.policy import load_policy
    >>> changes = SensitiveChange({**load_policy().detectors["sensitive_change"], "own_session_llr": -2.0})
    >>> state = changes.initial()
    >>> def change(field, minute, session_llr=0.0):
    ...     event = event_from_dict({"event_id": f"c{minute}", "type": "account_change", "account_id": "A",
    ...         "ts": f"2025-03-03T10:{minute:02d}:00.000+09:00", "field": field})
    ...     ev = Evidence(); ev.session_llr = session_llr
    ...     changes.score(event, state, ev); ev.llr = sum(f.weight for f in ev.findings)
    ...     changes.learn(event, state, ev)
    ...     return [f.reason for f in ev.findings]
    >>> change("email", 1), change("phone", 4)  # both channels, from a session nobody recognises
    (['sensitive_change'], ['sensitive_change', 'contact_takeover'])
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import msgspec

from kabuguard.detectors.base import Evidence, Finding, duration_us, names, number, share, weights
from kabuguard.events.model import CHANGE_FIELDS


class ChangeState(msgspec.Struct):
    # (ts_us, the change's llr, field) of recent sensitive changes
    changes: list[tuple[int, float, str]] = []


class SensitiveChange:
    name: ClassVar[str] = "sensitive_change"
    stage: ClassVar[str] = "final"
    types: ClassVar[frozenset[str]] = frozenset({"account_change", "order"})

    def __init__(self, params: dict[str, Any]) -> None:
        self.field_weights = weights(params, "field_weights", self.name, CHANGE_FIELDS)
        self.burst_us = duration_us(params, "burst_hours", self.name)
        self.after_us = duration_us(params, "after_days", self.name)
        self.carry = share(params, "carry", self.name)
        self.own_session_llr = number(params, "own_session_llr", self.name)
        self.contact_fields = names(params, "contact_fields", self.name, CHANGE_FIELDS)
        self.contact_weight = number(params, "contact_takeover_weight", self.name)

    def initial(self) -> ChangeState:
        return ChangeState()

    def score(self, event: Any, state: ChangeState, ev: Evidence) -> None:
        recent = [c for c in state.changes if event.ts_us - c[0] <= self.after_us]
        if event.kind == "account_change":
            weight = self.field_weights.get(event.field, 0.0)
            if weight:
                # Each further change in the burst window doubles the odds: all channels at once.
                burst = [field for t, _, field in recent if event.ts_us - t <= self.burst_us]
                ev.findings.append(Finding(self.name, weight + len(burst) * math.log(2)))
                if self._completes_contacts(event.field, set(burst)) and ev.session_llr > self.own_session_llr:
                    ev.findings.append(Finding("contact_takeover", self.contact_weight))
        elif recent and ev.session_llr > self.own_session_llr:
            llr = max(llr for _, llr, _ in recent)
            if llr > 0:
                ev.findings.append(Finding("order_after_risky_change", self.carry * llr))

    def _completes_contacts(self, field: str, burst: set[str]) -> bool:
        """This change redirects the last of the contact channels the burst had left untouched."""
        return field in self.contact_fields and self.contact_fields - burst == {field}

    def learn(self, event: Any, state: ChangeState, ev: Evidence) -> None:
        if event.kind == "account_change" and event.field in self.field_weights:
            cutoff = event.ts_us - self.after_us
            state.changes = [c for c in state.changes if c[0] > cutoff] + [(event.ts_us, ev.llr, event.field)]
