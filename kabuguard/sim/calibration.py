"""How often accounts are taken over, scaled from the FSA's 2025 monthly figures.

The FSA published, per month of 2025, the number of unauthorised accesses to securities accounts
and of accounts with unauthorised trades (provisional, revised between releases). We keep the
monthly shape and the trade/access ratio, convert to a per-account daily rate over Japan's online
brokerage accounts, and amplify it so that a run of a few thousand accounts over two weeks holds
dozens to hundreds of hijacked accounts to evaluate on.
"""

from __future__ import annotations

import calendar
import datetime as dt

# month -> (unauthorised accesses, accounts with unauthorised trades), latest FSA revisions.
# May accesses = Jan-May total 10,422 minus Jan-Apr; December trades = December accesses times
# November's trade/access ratio (not yet published when compiled).
FSA_MONTHLY_2025: dict[int, tuple[int, int]] = {
    1: (65, 39), 2: (43, 33), 3: (1420, 687), 4: (5441, 2987), 5: (3453, 2289), 6: (1759, 851),
    7: (970, 818), 8: (1248, 562), 9: (310, 182), 10: (736, 354), 11: (308, 138), 12: (343, 154),
}

# Accounts at Japan's large online brokers in 2025 (SBI, Rakuten, Monex, Matsui, au Kabucom:
# roughly 32 million together); the denominator of the per-account rate.
JP_ONLINE_ACCOUNTS = 32_000_000

# The real rate (about 6 accesses per million accounts a day at the April peak) would leave a
# 5,000-account run with no victim at all; 250x gives about 7 a day in April.
AMPLIFICATION = 250

# Share of hijacked accounts by attack style (the 2025 wave was mostly the pump style).
STYLE_MIX: dict[str, float] = {
    "pump_2025": 0.50,
    "stealth_proxy": 0.15,
    "change_first": 0.15,
    "credential_stuffing": 0.20,
}


def daily_hijack_rate(day: dt.date) -> float:
    """Expected hijacked accounts per account on `day` (amplified). Dates outside 2025 use the
    2025 figure of the same calendar month."""
    accesses, _ = FSA_MONTHLY_2025[day.month]
    days = calendar.monthrange(2025, day.month)[1]
    return accesses / days / JP_ONLINE_ACCOUNTS * AMPLIFICATION


def trade_ratio(day: dt.date) -> float:
    """Of the accounts accessed that month, the share the attackers also traded in."""
    accesses, trades = FSA_MONTHLY_2025[day.month]
    return trades / accesses
