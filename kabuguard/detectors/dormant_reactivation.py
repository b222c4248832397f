"""Dormant account reactivation: the first login after months without one.

Dormant accounts were favoured targets in 2025: holdings nobody watches, owners who would not
notice a sale. Alone this is weak evidence (many customers come back after a quiet spell); it
matters with a new device or network. The account's last login before the replay may come from
the `account` record's `last_login_at` field. Known false positives: seasonal investors.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from kabuguard.detectors.base import Evidence, Finding, number
from kabuguard.events.instants import parse_ts

_DAY_US = 86_400_000_000


class DormancyState(msgspec.Struct):
    last_active_us: int = 0


class DormantReactivation:
    name: ClassVar[str] = "dormant_reactivation"
    stage: ClassVar[str] = "account"
    types: ClassVar[frozenset[str]] = frozenset({"login", "account"})

    def __init__(self, params: dict[str, Any]) -> None:
        self.min_days = number(params, "min_days", self.name)
        self.weight = number(params, "weight", self.name)

    def initial(self) -> DormancyState:
        return DormancyState()

    def score(self, event: Any, state: DormancyState, ev: Evidence) -> None:
        if event.kind == "login" and state.last_active_us:
            idle_days = (event.ts_us - state.last_active_us) / _DAY_US
            if idle_days >= self.min_days:
                ev.findings.append(Finding(self.name, self.weight))

    def learn(self, event: Any, state: DormancyState, ev: Evidence) -> None:
        if event.kind == "account":
            stamp = event.last_login_at
            if stamp and not state.last_active_us:  # read at the boundary (`model.Account`)
                state.last_active_us = parse_ts(stamp)
        elif event.success:
            state.last_active_us = event.ts_us
