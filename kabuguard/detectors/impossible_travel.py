"""Impossible travel: two logins of one account from countries too far apart for the time between.

Country centres are coarse, so only long hops count (Tokyo to a US address in an hour). Known
false positives: a customer on a VPN, or roaming mobile data that exits in another country.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from kabuguard.detectors.base import Evidence, Finding, number, positive
from kabuguard.netintel import country_distance_km

_HOUR_US = 3_600_000_000


class TravelState(msgspec.Struct):
    last_ts_us: int = 0
    last_country: str = ""


class ImpossibleTravel:
    name: ClassVar[str] = "impossible_travel"
    stage: ClassVar[str] = "account"
    types: ClassVar[frozenset[str]] = frozenset({"login"})

    def __init__(self, params: dict[str, Any]) -> None:
        self.max_kmh = positive(params, "max_kmh", self.name)  # 0 makes every trip impossible
        self.min_km = number(params, "min_km", self.name)
        self.weight = number(params, "weight", self.name)
        self.learn_max_llr = number(params, "learn_max_llr", self.name)

    def initial(self) -> TravelState:
        return TravelState()

    def score(self, event: Any, state: TravelState, ev: Evidence) -> None:
        country = ev.net.country
        if not country or not state.last_country or country == state.last_country:
            return
        km = country_distance_km(state.last_country, country)
        if km is None or km < self.min_km:
            return
        hours = max((event.ts_us - state.last_ts_us) / _HOUR_US, 1e-3)
        if km / hours > self.max_kmh:
            ev.findings.append(Finding(self.name, self.weight))

    def learn(self, event: Any, state: TravelState, ev: Evidence) -> None:
        # An attacker's login abroad must not make the owner's next login at home "impossible".
        if event.success and ev.net.country and ev.session_llr <= self.learn_max_llr:
            state.last_ts_us = event.ts_us
            state.last_country = ev.net.country
