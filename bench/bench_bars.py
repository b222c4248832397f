"""Market-bar throughput: bars per second through the core, in batches and one at a time.

Run: .venv/bin/python bench/bench_bars.py [--symbols 2000] [--minutes 500] [--profile]

Builds typed `market_bar` records (as the reader would hand them over) for a whole market:
`--symbols` names, one bar a minute for the liquid half and a few an hour for the thin half,
random walks with volume three times the day's usual at the open, decaying to it within the hour. Then it times, in this one process:
- the pipeline on consecutive bars, `Pipeline.process_bars`, as the replay runs them: batches
  of one minute through the market and symbol stages (market_factor, pump_surveillance);
- the pipeline one bar at a time, `Pipeline.process`, as the service and Spark run them.
Both run with the garbage collector as the replay runs it (`collector_off`: left
alone, its full passes over every bar held here cost more than the bars). The first call compiles the kernels (or loads them from numba's cache); a warm-up run on the
first minutes comes before the timing. With --profile it prints where the batch path spends
its time (cProfile). Not a test: it reports figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time

import numpy as np

from kabuguard.detectors.market_factor import MARKET_KEY
from kabuguard.engine import Pipeline
from kabuguard.engine.redis_store import StateCodec
from kabuguard.events.model import MarketBar
from kabuguard.replay import collector_off
from machine import line as machine_line  # bench/machine.py, beside this script

JST = dt.timezone(dt.timedelta(hours=9))


def market(symbols: int, minutes: int, seed: int = 1) -> list[MarketBar]:
    rng = np.random.default_rng(seed)
    start = int(dt.datetime(2025, 4, 7, 9, 0, tzinfo=JST).timestamp()) * 1_000_000
    liquid = np.arange(symbols) < symbols // 2
    trade_p = np.where(liquid, 1.0, 0.05)
    price = rng.uniform(200, 5000, symbols)
    codes = [f"{1000 + i}" for i in range(symbols)]
    bars = []
    for m in range(1, minutes + 1):
        ts_us = start + m * 60_000_000
        ts = dt.datetime.fromtimestamp(ts_us / 1e6, JST).isoformat(timespec="milliseconds")
        price *= np.exp(rng.normal(0, 0.0015, symbols))
        volume = (rng.lognormal(6, 0.6, symbols) * (1 + 2 * np.exp(-m / 15))).astype(np.int64) * 100
        trades = rng.random(symbols) < trade_p
        for i in np.flatnonzero(trades):
            close = float(round(price[i], 1))
            bar = MarketBar(event_id=f"mb-{m}-{i}", ts=ts, symbol=codes[i], open=close, high=close,
                            low=close, close=close, volume=int(volume[i]))
            bar.ts_us = ts_us
            bars.append(bar)
    return bars


def batch_path(bars: list[MarketBar]) -> tuple[float, float, int]:
    pipeline = Pipeline()
    t0, c0 = time.perf_counter(), time.process_time()
    alerts = len(pipeline.process_bars(bars))
    return time.perf_counter() - t0, time.process_time() - c0, alerts


def pipeline_path(bars: list[MarketBar]) -> tuple[float, float, int]:
    pipeline = Pipeline()
    process = pipeline.process
    alerts = 0
    t0, c0 = time.perf_counter(), time.process_time()
    for bar in bars:
        alerts += len(process(bar)[1])
    return time.perf_counter() - t0, time.process_time() - c0, alerts


def state_bytes(bars: list[MarketBar]) -> tuple[float, int]:
    """State after the bars, as the service would store it (msgpack): mean bytes per symbol (its
    symbol-stage key and its rows), and the market stage's one key."""
    pipeline = Pipeline()
    pipeline.process_bars(bars)
    codec, store = StateCodec(pipeline), pipeline.store
    symbols = sorted({bar.symbol for bar in bars})
    size = sum(len(codec.encode(store.get("symbol", s))) for s in symbols)
    for detector in (*pipeline.market.by_kind["market_bar"], *pipeline.symbol.by_kind["market_bar"]):
        table, at = store.rows(detector.row_stage, symbols, detector.fresh_row)
        size += sum(len(codec.encode({"row": table[i].tolist()})) for i in at.tolist())
    return size / len(symbols), len(codec.encode(store.get("market", MARKET_KEY)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--symbols", type=int, default=2000)
    ap.add_argument("--minutes", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    bars = market(args.symbols, args.minutes)
    print(f"{len(bars)} bars, {args.symbols} symbols, {args.minutes} minutes")
    batch_path(bars[:20_000])  # compiles the kernels, or loads them from numba's cache
    # Wall clock and this process's CPU time: on a shared machine the second is the fairer figure.
    for name, path in (("in batches (Pipeline.process_bars, the replay)", batch_path),
                       ("one at a time (Pipeline.process, service/Spark)", pipeline_path)):
        with collector_off():  # the garbage collector as the replay runs it
            runs = [path(bars) for _ in range(args.repeat)]
        # Best of each apart: the fastest run by the wall clock need not be the cheapest in CPU.
        wall, cpu, alerts = min(r[0] for r in runs), min(r[1] for r in runs), runs[0][2]
        print(f"{name}: {len(bars) / wall:,.0f} bars/s wall, {len(bars) / cpu:,.0f} bars/s CPU ({alerts} alerts)")
    per_symbol, market_key = state_bytes(bars)
    print(f"state: {per_symbol:,.0f} bytes per symbol (its key and rows), {market_key:,} bytes in the market key (msgpack)")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(machine_line())
    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        batch_path(bars)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(8)


if __name__ == "__main__":
    main()
