"""Derive the bundled instrument table from the public TSE company list (run once, offline).

The source (a listed-company export with market capitalisation and segment) has no price, share
count or volume, so we derive plausible ones: a price that rises weakly with size, shares as
market cap over price, and an average daily volume from a turnover rate that depends on segment
and size. The point is that thin small caps come out thin (thousands of shares a day), as the
2025 pump targets were. Regenerate with:

    python -m kabuguard.sim.tse_derive /path/to/companies_2025-10-14.csv kabuguard/data/tse_instruments.csv.gz
"""

from __future__ import annotations

import csv
import gzip
import io
import sys
import zlib

import numpy as np

SEGMENTS = {
    "プライム（内国株式）": "TSE Prime",
    "スタンダード（内国株式）": "TSE Standard",
    "グロース（内国株式）": "TSE Growth",
}

# Median daily turnover (volume / shares outstanding, %) by market-cap bucket (upper bound, JPY)
# and segment. Growth names churn more than Standard ones of the same size; small Standard
# names barely trade.
TURNOVER_PCT: list[tuple[float, dict[str, float]]] = [
    (5e9, {"TSE Prime": 0.12, "TSE Standard": 0.06, "TSE Growth": 0.20}),
    (2e10, {"TSE Prime": 0.18, "TSE Standard": 0.09, "TSE Growth": 0.35}),
    (1e11, {"TSE Prime": 0.25, "TSE Standard": 0.14, "TSE Growth": 0.50}),
    (1e12, {"TSE Prime": 0.35, "TSE Standard": 0.20, "TSE Growth": 0.60}),
    (float("inf"), {"TSE Prime": 0.40, "TSE Standard": 0.25, "TSE Growth": 0.60}),
]

FIELDS = ["code", "name", "segment", "market_cap_jpy", "price_jpy", "shares_outstanding", "adv_shares"]


def _turnover(segment: str, market_cap: float) -> float:
    for bound, by_segment in TURNOVER_PCT:
        if market_cap < bound:
            return by_segment[segment] / 100
    raise AssertionError("the last bucket is unbounded")


def derive(rows: list[dict[str, str]]) -> list[dict[str, object]]:
    """Ordinary shares with a market cap, each with a derived price, share count and ADV."""
    out = []
    for row in rows:
        code, cap_text = row["銘柄コード"], row["時価総額"]
        if len(code) != 4 or not cap_text or row["優先市場"] not in SEGMENTS:
            continue  # preferred and bond-type shares carry 5-digit codes and no market cap
        segment, cap = SEGMENTS[row["優先市場"]], float(cap_text)
        # Seeded by the code so that the table is reproducible row by row.
        rng = np.random.default_rng(zlib.crc32(code.encode()))
        log_price = 3.0 + 0.15 * (np.log10(cap) - 10.3) + rng.normal(0, 0.3)
        price = float(np.clip(round(10**log_price), 50, 60000))
        shares = max(100, round(cap / price / 100) * 100)
        adv = shares * _turnover(segment, cap) * float(rng.lognormal(0, 0.5))
        out.append(
            {
                "code": code,
                "name": row["会社名"],
                "segment": segment,
                "market_cap_jpy": round(cap),
                "price_jpy": price,
                "shares_outstanding": shares,
                "adv_shares": max(100, round(adv / 100) * 100),
            }
        )
    return sorted(out, key=lambda r: str(r["code"]))


def main(source: str, target: str) -> None:
    with open(source, encoding="utf-8", newline="") as f:
        rows = derive(list(csv.DictReader(f)))
    text = io.StringIO()
    writer = csv.DictWriter(text, FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with open(target, "wb") as f:  # no name and no time in the header: reproducible bytes
        f.write(gzip.compress(text.getvalue().encode(), mtime=0))


if __name__ == "__main__":
    main(*sys.argv[1:3])
