"""Values in yen, whatever the instrument's currency.

The yen lines of the policy (what counts as a thin stock, how large an order is) hold for every
market only once prices are in one currency: a US mid-cap trading $100 M a day is not thin
because its ADV in dollars is under 2 billion. `fx_jpy` is the policy's table of yen per unit
of each currency (configuration, not market data: the lines need the order of magnitude, not
today's rate). A currency missing from it has no yen value, and says so (None).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kabuguard.detectors.liquidity import lacks_liquidity


def to_jpy(amount: float | None, currency: str | None, fx_jpy: Mapping[str, float]) -> float | None:
    """`amount` in `currency` (JPY when not given) as yen; None when either is unknown."""
    rate = fx_jpy.get(currency or "JPY")
    return amount * rate if amount is not None and rate else None


def adv_value_jpy(instrument: Any, fx_jpy: Mapping[str, float]) -> float | None:
    """A symbol's average daily traded value in yen; None without an ADV, a price or a rate."""
    if lacks_liquidity(instrument):
        return None
    return to_jpy(instrument.adv_shares * instrument.last_price, instrument.currency, fx_jpy)


def thin(instrument: Any, fx_jpy: Mapping[str, float], max_adv_value_jpy: float, unknown: bool) -> bool:
    """Whether a symbol trades at most `max_adv_value_jpy` a day; `unknown` when its liquidity
    is not known (a detector of pressure on thin names keeps such a symbol in, one that names a
    position thin leaves it out)."""
    value = adv_value_jpy(instrument, fx_jpy)
    return unknown if value is None else value <= max_adv_value_jpy
