"""Replay throughput and memory: events per second, peak RSS, state bytes per account.

Run: .venv/bin/python bench/bench_replay.py [--sizes 250000,1000000,4000000] [--profile]

For each target size it simulates a brokerage (cached under bench/.data/, not committed) sized
to about that many events, then replays it in a fresh process and reports: events, seconds
reading, seconds deciding, events per second (deciding, and end to end), peak RSS. It also
measures the detection state held per account (tracemalloc) on the smallest size, and with
--profile prints where deciding spends its time (cProfile, top functions). With --by-detector
the largest size is replayed once more with a clock around every step (each detector's score
and learn, each stage hook, the network lookup), and the steps are listed by their share of
deciding: the timers add their own cost, so read shares, not absolute figures. With --floor the
largest size is replayed twice more, once with every per-event detector's score and learn made a
no-op and once with the stage hooks (session risk, the decision) no-ops too: what the stages'
own loop and state look-ups cost, apart from what the detectors and the decision do (market
bars are decided as usual in all three).
Not a test: it reports figures.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from kabuguard.events.order import SPILL_AFTER
from machine import line as machine_line  # bench/machine.py, beside this script

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".data"
# Measured on default simulations: activity events (logins, changes, orders, executions) per
# account per calendar day, and one-minute bars per symbol per calendar day (thin symbols skip
# minutes; weekends have none). Half of each run is activity, half market bars.
ACTIVITY_PER_ACCOUNT_DAY = 0.44
BARS_PER_SYMBOL_DAY = 136
DAYS = 20


def _simulate(target: int) -> Path:
    accounts = max(1000, int(target / 2 / (ACTIVITY_PER_ACCOUNT_DAY * DAYS)))
    symbols = max(20, min(3778, int(target / 2 / (BARS_PER_SYMBOL_DAY * DAYS))))
    out = CACHE / f"sim-{target}"
    if not (out / "labels.jsonl").exists():
        subprocess.run([sys.executable, "-m", "kabuguard.cli", "simulate", "--out", str(out), "--accounts",
                        str(accounts), "--days", str(DAYS), "--symbols", str(symbols), "--seed", "101"], check=True)
    return out / "events"


def _timed(pipeline: object) -> collections.Counter:
    """Wrap every step of the pipeline in a clock: nanoseconds per (event type, stage, step)."""
    spent: collections.Counter = collections.Counter()
    clock = time.perf_counter_ns

    def timer(fn, stage: str, step: str):
        def timed(event, state, ev):
            start = clock()
            fn(event, state, ev)
            spent[event.kind, stage, step] += clock() - start
        return timed

    def batch_timer(fn, stage: str, step: str):
        def timed(events, slots, evs, store):
            start = clock()
            fn(events, slots, evs, store)
            spent[events[0].kind, stage, step] += clock() - start
        return timed

    for stage in pipeline.stages:
        stage._steps = {kind: tuple((name, initial, timer(score, stage.name, f"{name}.score"), timer(learn, stage.name, f"{name}.learn"))
                                    for name, initial, score, learn in steps)
                        for kind, steps in stage._steps.items()}
        stage._batch = {kind: tuple((name, initial, batch_timer(run, stage.name, f"{name}.run_batch"))
                                    for name, initial, run in steps)
                        for kind, steps in stage._batch.items()}
        if stage.between is not None:
            stage.between = timer(stage.between, stage.name, "(stage hook)")
    lookup = pipeline.net.lookup

    def timed_lookup(ip):
        start = clock()
        found = lookup(ip)
        spent["(activity)", "evidence", "network lookup"] += clock() - start
        return found

    pipeline.net.lookup = timed_lookup
    return spent


def _no_op(event, state, ev) -> None:
    """Stands in for a detector step or a stage hook in a `--floor` run."""


def _hollowed(pipeline: object, hooks: bool) -> None:
    """Every per-event detector step made a no-op, and with `hooks` every stage hook too."""
    for stage in pipeline.stages:
        stage._steps = {kind: tuple((name, initial, _no_op, _no_op) for name, initial, _, _ in steps)
                        for kind, steps in stage._steps.items()}
        if hooks and stage.between is not None:
            stage.between = _no_op


def _counted(events, counts: collections.Counter):
    """The events, counted by type on their way."""
    for event in events:
        counts[event.kind] += 1
        yield event


def _child(events_dir: str, profile: bool, state: bool, spill_after: int, by_detector: bool = False,
           floor: str = "") -> None:
    """Runs in a fresh process so that peak RSS belongs to one replay."""
    import itertools
    import tempfile

    from kabuguard.engine import Pipeline
    from kabuguard.events.order import TotalOrder
    from kabuguard.events.reader import event_from_dict
    from kabuguard.replay import collector_off, decide, read_into

    t0, c0 = time.perf_counter(), time.process_time()
    order = TotalOrder(spill_after, workdir=tempfile.gettempdir())
    read_into([events_dir], order.add, [], quiet=True)
    # The first event comes once the held events are sorted and the runs opened: reading's share.
    merged = iter(order)
    ordered = itertools.chain([next(merged)], merged)
    t1, c1 = time.perf_counter(), time.process_time()
    pipeline = Pipeline()
    spent = _timed(pipeline) if by_detector else None
    if floor:
        _hollowed(pipeline, hooks=floor == "hooks")
    if state:
        import tracemalloc
        # The compiled bar kernels load (or compile) on their first bar, outside the state measured.
        Pipeline().process_bars([event_from_dict({
            "event_id": "warm", "type": "market_bar", "symbol": "0", "ts": "2025-01-06T09:01:00+09:00",
            "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1})])
        tracemalloc.start()
    if profile:
        import cProfile
        import pstats
        prof = cProfile.Profile()
        prof.enable()
    counts: collections.Counter = collections.Counter()
    if by_detector:
        ordered = _counted(ordered, counts)
    # As the replay runner does: market bars in batches, the cyclic collector off.
    n = 0
    with collector_off():
        for n, _, _ in decide(pipeline, ordered):
            pass
    t2, c2 = time.perf_counter(), time.process_time()
    # Process CPU time beside wall clock: on a shared machine wall clock mostly measures the others.
    result = {"events": n, "read_s": round(t1 - t0, 2), "decide_s": round(t2 - t1, 2),
              "decide_eps": round(n / (t2 - t1)), "end_to_end_eps": round(n / (t2 - t0)),
              "read_cpu_s": round(c1 - c0, 2), "decide_cpu_s": round(c2 - c1, 2),
              "decide_eps_cpu": round(n / (c2 - c1)), "end_to_end_eps_cpu": round(n / (c2 - c0)),
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
              "load": os.getloadavg()[0], "runs_on_disk": order.runs, "counts": counts}
    if state:
        current, _ = tracemalloc.get_traced_memory()
        accounts = pipeline.store.keys("final")
        result["state_bytes_per_account"] = round(current / max(accounts, 1))
        result["accounts"] = accounts
    if profile:
        prof.disable()
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(15)
    if spent is not None:
        result["steps"] = [[*key, ns] for key, ns in spent.most_common()]
    print(json.dumps(result))


def _print_steps(r: dict, top: int = 25) -> None:
    """The timed steps by their share of deciding, with the cost per event of their type."""
    total = r["decide_s"] * 1e9
    print(f"where deciding goes (clocked run: {r['events']} events, {r['decide_s']} s with the clocks; top {top} steps)")
    print(f"{'event type':>14} {'stage':>8} {'step':<38} {'share':>6} {'us per event':>13}")
    for kind, stage, step, ns in r["steps"][:top]:
        count = r["counts"].get(kind) or sum(r["counts"].get(k, 0) for k in ("login", "account_change", "order"))
        print(f"{kind:>14} {stage:>8} {step:<38} {ns / total:>6.1%} {ns / 1000 / max(count, 1):>13.2f}")


def _child_cmd(events_dir: Path, spill_after: int) -> list[str]:
    """A child run on `events_dir`, every one with the same --spill-after (the sort is part of the cost)."""
    return [sys.executable, __file__, "--child", str(events_dir), "--spill-after", str(spill_after)]


def _run(cmd: list[str]) -> dict:
    """The child's JSON result; its stderr (the profile) passes through."""
    proc = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(proc.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="250000,1000000,4000000")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--by-detector", action="store_true", help="Time every detector step on the largest size.")
    parser.add_argument("--floor", action="store_true",
                        help="On the largest size, also time deciding with no-op detectors, then no-op hooks too.")
    parser.add_argument("--spill-after", type=int, default=SPILL_AFTER,
                        help="Events sorted in memory before runs go to disk (the replay's default).")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--state", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--hollow", default="", choices=("", "detectors", "hooks"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.profile, args.state, args.spill_after, args.by_detector, args.hollow)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{'target':>10} {'events':>10} {'read s':>8} {'decide s':>9} {'decide ev/s':>12} {'e2e ev/s':>10} "
          f"{'read cpu s':>10} {'decide cpu s':>12} {'decide ev/cpu s':>15} {'e2e ev/cpu s':>13} {'peak MB':>8} {'load':>5} "
          f"{'runs':>5}")
    for n, target in enumerate(sizes):
        events_dir = _simulate(target)
        cmd = _child_cmd(events_dir, args.spill_after)
        if args.profile and n == len(sizes) - 1:
            cmd.append("--profile")
        r = _run(cmd)
        print(f"{target:>10} {r['events']:>10} {r['read_s']:>8} {r['decide_s']:>9} {r['decide_eps']:>12} "
              f"{r['end_to_end_eps']:>10} {r['read_cpu_s']:>10} {r['decide_cpu_s']:>12} {r['decide_eps_cpu']:>15} "
              f"{r['end_to_end_eps_cpu']:>13} {r['peak_rss_mb']:>8} {r['load']:>5} {r['runs_on_disk']:>5}", flush=True)
    if args.floor:
        full = r["decide_cpu_s"]
        print(f"floor ({r['events']} events, decide CPU s): everything {full}", end="", flush=True)
        for hollow, what in (("detectors", "no-op detectors"), ("hooks", "no-op detectors and hooks")):
            cut = _run([*_child_cmd(events_dir, args.spill_after), "--hollow", hollow])["decide_cpu_s"]
            print(f"; {what} {cut} ({cut / full:.0%})", end="", flush=True)
        print()
    if args.by_detector:
        _print_steps(_run([*_child_cmd(events_dir, args.spill_after), "--by-detector"]))
    small = _simulate(sizes[0])
    r = _run([*_child_cmd(small, args.spill_after), "--state"])
    print(f"detection state: {r['state_bytes_per_account']} bytes per account ({r['accounts']} accounts, tracemalloc)")
    print(machine_line())


if __name__ == "__main__":
    main()
