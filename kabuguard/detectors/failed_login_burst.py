"""Failed-login burst on one account: someone guessing, or trying a phished password list.

Counts the account's failed logins in a sliding window; a success right after a burst is the
moment a guess worked. Known false positives: a customer who forgot a recently changed password.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import msgspec

from kabuguard.detectors.base import Evidence, Finding, count, duration_us, number


class FailureState(msgspec.Struct):
    failures: list[int] = []


class FailedLoginBurst:
    name: ClassVar[str] = "failed_login_burst"
    stage: ClassVar[str] = "account"
    types: ClassVar[frozenset[str]] = frozenset({"login"})

    def __init__(self, params: dict[str, Any]) -> None:
        self.window_us = duration_us(params, "window_minutes", self.name)
        self.min_failures = count(params, "min_failures", self.name)
        self.weight = number(params, "weight", self.name)

    def initial(self) -> FailureState:
        return FailureState()

    def score(self, event: Any, state: FailureState, ev: Evidence) -> None:
        recent = _recent(state.failures, event.ts_us - self.window_us)
        if recent >= self.min_failures:
            ev.findings.append(Finding(self.name, self.weight + math.log(recent / self.min_failures)))

    def learn(self, event: Any, state: FailureState, ev: Evidence) -> None:
        cutoff = event.ts_us - self.window_us
        kept = [t for t in state.failures if t > cutoff]
        if not event.success:
            kept.append(event.ts_us)
        state.failures = kept


def _recent(stamps: list[int], cutoff: int) -> int:
    return sum(1 for t in stamps if t > cutoff)
