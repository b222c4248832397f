"""The synthetic brokerage: customers with habits, benign confounders, labelled campaigns and a
market that answers their order flow. `simulate` writes one run; see docs/simulator.md."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from kabuguard.sim.brokerage import Brokerage
from kabuguard.sim.campaigns import Campaigns
from kabuguard.sim.clock import MS_PER_DAY, day_start_ms, is_trading_day, iso
from kabuguard.sim.confounders import Confounders
from kabuguard.sim.customers import Customer, population
from kabuguard.sim.habits import Habits
from kabuguard.sim.instruments import Universe, load_tse, sample
from kabuguard.sim.market import Market
from kabuguard.sim.networks import Networks
from kabuguard.sim.writer import RunWriter


@dataclass(frozen=True)
class Config:
    accounts: int = 5000
    days: int = 14
    seed: int = 7
    firms: int = 1
    symbols: int = 300
    start: dt.date = dt.date(2025, 4, 7)
    # Days of ordinary activity before any campaign; None: half the run, at most 21 days.
    history_days: int | None = None

    @property
    def history(self) -> int:
        return min(21, self.days // 2) if self.history_days is None else self.history_days

    def __post_init__(self) -> None:
        # Clock arithmetic works in epoch microseconds and the history reaches weeks before the
        # start: keep the whole run well inside the calendar.
        if not dt.date(1971, 1, 1) <= self.start <= dt.date(9000, 1, 1):
            raise ValueError(f"start {self.start} is outside 1971-01-01 to 9000-01-01")
        if not self._trading_day_from(0):
            raise ValueError(f"{self.start} plus {self.days} days holds no TSE trading day; start earlier or run longer")
        if self.history_days is not None and not self._trading_day_from(self.history_days):
            # Campaigns would have no trading day after the history (they used to fall inside it,
            # silently); the default history falls back to the whole run instead (Campaigns.plan).
            raise ValueError(f"--history-days {self.history_days} leaves no trading day of the {self.days}-day run "
                             f"from {self.start} for campaigns: give fewer history days or more days")

    def _trading_day_from(self, first: int) -> bool:
        return any(is_trading_day(self.start + dt.timedelta(days=i)) for i in range(first, self.days))


def firm_ids(n: int) -> list[str | None]:
    """`firm-a`, `firm-b`, ...; None for a single firm (events then carry no `firm`)."""
    if n == 1:
        return [None]
    return [f"firm-{chr(ord('a') + i)}" if i < 26 else f"firm-{i + 1}" for i in range(n)]


def simulate(config: Config, out: Path, progress: Callable[[str, int], None] = lambda stage, days_done: None) -> dict:
    """Write a run to `out` (events/, labels.jsonl, simulation.json); returns the summary.
    `progress` hears the current stage and the number of days written so far.

    Every component draws from its own stream spawned from the seed, so a change in one (more
    news bursts, say) does not reshuffle the others, and the same seed gives the same bytes.
    """
    progress("customers", 0)
    streams = iter(np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(8))
    days = [config.start + dt.timedelta(days=i) for i in range(config.days)]
    firms = firm_ids(config.firms)
    networks = Networks()
    universe = sample(load_tse(), config.symbols, next(streams))
    customers = population(config.accounts, firms, universe, networks, config.start, config.days, next(streams))
    market = Market(universe, next(streams))
    broker = Brokerage(market, next(streams), multi_firm=config.firms > 1)
    habits = Habits(broker, networks, next(streams))
    progress("campaigns", 0)
    confounders = Confounders(customers, universe, networks, habits, market, days, next(streams))
    confounders.plan()
    campaigns = Campaigns(customers, universe, networks, broker, habits, days, firms, next(streams),
                          history_days=config.history)
    campaigns.plan()
    habits.prepare(customers)
    broker.open_books(customers)

    writer = RunWriter(out)
    writer.reference(_instruments(universe, config.start) + _accounts(customers, universe, config.start, next(streams)))
    codes = np.array(universe.codes)
    for i, day in enumerate(days):
        jobs = habits.day_jobs(day) + confounders.day_jobs(day) + campaigns.day_jobs(day)
        jobs.sort(key=lambda job: job[0])
        for _, act in jobs:
            act()
        if is_trading_day(day):
            bars = market.trade_day(day, *broker.flows(day))
            broker.fill(day, bars)
            writer.bars(day, codes, bars)
        writer.activity(day, broker.take_events())
        progress(f"{day:%Y-%m-%d}", i + 1)
    episodes = confounders.episodes() + [
        {"kind": "pump_episode", "symbol": universe.codes[ep.symbol], "start": iso(ep.start),
         "end": iso(ep.end), "campaign_id": ep.campaign_id, "news": False} | ({"firm": ep.firm} if ep.firm else {})
        for cp in campaigns.campaigns for ep in cp.episodes if ep.start is not None
    ]
    writer.episodes(episodes)
    writer.close()
    summary = {
        "config": asdict(config) | {"start": config.start.isoformat()},
        "events": dict(sorted(writer.counts.items())),
        "labels": dict(sorted(writer.label_counts.items())),
        "hijacked_accounts": {style: len(a) for style, a in sorted(writer.hijacked.items())},
        "traded_accounts": {style: len(a) for style, a in sorted(writer.traded.items())},
        "campaigns": [
            {"campaign_id": cp.campaign_id, "attack_style": cp.style, "symbol": universe.codes[cp.symbol],
             "attackers": len(cp.attackers)}
            for cp in campaigns.campaigns
        ],
    }
    (out / "simulation.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return summary


def _instruments(universe: Universe, start: dt.date) -> list[dict]:
    ts = iso(day_start_ms(start) - 3_600_000)
    return [
        {"event_id": "", "type": "instrument", "ts": ts, "symbol": universe.codes[i], "name": universe.names[i],
         "market": universe.markets[i], "currency": "JPY", "shares_outstanding": int(universe.shares[i]),
         "adv_shares": float(universe.adv[i]), "last_price": float(universe.price[i])}
        for i in range(len(universe))
    ]


def _accounts(customers: list[Customer], universe: Universe, start: dt.date, rng: np.random.Generator) -> list[dict]:
    """Opening states, with the last login before the run (years ago for dormant accounts)."""
    start_ms = day_start_ms(start)
    ts = iso(start_ms - 3_600_000)
    out = []
    for c in customers:
        days_ago = rng.uniform(400, 1500) if c.dormant else rng.exponential(1 / max(c.rate, 0.05)) + 0.1
        event = {
            "event_id": "", "type": "account", "ts": ts, "account_id": c.account_id,
            "opened_at": iso(c.opened_ms),
            "holdings": [{"symbol": universe.codes[s], "qty": q} for s, q in sorted(c.holdings.items())],
            "cash": round(float(c.cash), 2),
            "last_login_at": iso(max(c.opened_ms, start_ms - 3_600_000 - int(days_ago * MS_PER_DAY))),
        }
        if c.firm is not None:
            event = {"event_id": "", "type": "account", "ts": ts, "firm": c.firm} | event
        out.append(event)
    return out
