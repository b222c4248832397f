"""The simulated market's instruments: a sample of the real TSE universe (bundled, derived table)."""

from __future__ import annotations

import csv
import gzip
import io
from dataclasses import dataclass
from importlib import resources

import numpy as np

# A name is "thin" when a normal day trades under this much value: a few retail accounts
# buying with their whole balance are then a multiple of the day's volume.
THIN_VALUE_JPY = 20_000_000


@dataclass(frozen=True)
class Universe:
    """Column arrays, one row per instrument, indexed by the simulator's symbol index."""

    codes: list[str]
    names: list[str]
    markets: list[str]
    market_cap: np.ndarray
    price: np.ndarray
    shares: np.ndarray
    adv: np.ndarray

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def thin(self) -> np.ndarray:
        """Thin small caps on Standard or Growth: the names the 2025 campaigns pumped."""
        small_market = np.array([m != "TSE Prime" for m in self.markets])
        return small_market & (self.adv * self.price < THIN_VALUE_JPY)

    def take(self, index: np.ndarray) -> Universe:
        return Universe(
            codes=[self.codes[i] for i in index],
            names=[self.names[i] for i in index],
            markets=[self.markets[i] for i in index],
            market_cap=self.market_cap[index],
            price=self.price[index],
            shares=self.shares[index],
            adv=self.adv[index],
        )


def load_tse() -> Universe:
    """The whole bundled table (about 3,800 ordinary shares)."""
    raw = resources.files("kabuguard").joinpath("data/tse_instruments.csv.gz").read_bytes()
    rows = list(csv.DictReader(io.StringIO(gzip.decompress(raw).decode())))
    return Universe(
        codes=[r["code"] for r in rows],
        names=[r["name"] for r in rows],
        markets=[r["segment"] for r in rows],
        market_cap=np.array([float(r["market_cap_jpy"]) for r in rows]),
        price=np.array([float(r["price_jpy"]) for r in rows]),
        shares=np.array([int(r["shares_outstanding"]) for r in rows], dtype=np.int64),
        adv=np.array([float(r["adv_shares"]) for r in rows]),
    )


def sample(full: Universe, n: int, rng: np.random.Generator) -> Universe:
    """`n` instruments: the large caps most customers hold, plenty of thin small caps (campaign
    targets, enthusiasts' picks) and a random middle, sorted by code."""
    n = min(n, len(full))
    order = np.argsort(-full.market_cap, kind="stable")
    large = order[: max(1, n * 3 // 10)]
    thin_pool = np.flatnonzero(full.thin)
    thin = rng.choice(thin_pool, size=min(len(thin_pool), n * 3 // 10), replace=False)
    rest_pool = np.setdiff1d(np.arange(len(full)), np.concatenate([large, thin]))
    rest = rng.choice(rest_pool, size=n - len(large) - len(thin), replace=False)
    chosen = np.concatenate([large, thin, rest])
    return full.take(chosen[np.argsort([full.codes[i] for i in chosen], kind="stable")])
