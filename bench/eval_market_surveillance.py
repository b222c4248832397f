"""Market surveillance on simulated runs: per pump episode, detected or not and how soon; false
alerts per symbol-day; how news bursts were labelled.

Run: .venv/bin/python bench/eval_market_surveillance.py --seeds 9001,9002 [--days 14]
     [--symbols 300] [--accounts 5000] [--firms 1] [--json out.json]

For each seed it simulates a run (cached under bench/.data/, not committed), then replays it
twice: market data alone (instruments and `market_bar`s: what any firm sees) and the whole
stream (the firm's own activity too, so alerts carry this firm's view of the buyers). Only
`pump_surveillance` alerts count here (reasons `volume_price_surge*`); other detectors' symbol
alerts are left out. An onset alert is a detection when it falls inside a manipulation episode
on its symbol (between its labelled `start` and `end`); its delay is alert time less `start`.
An onset outside every episode is a false alert; one inside a news burst is reported apart. A
stronger leg alerted again inside an open episode (`escalated`) counts as an onset alert too,
and is also counted apart. Not a test: it reports figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".data"


def _instant(ts: str) -> int:
    from kabuguard.events.reader import parse_ts  # noqa: PLC0415

    return parse_ts(ts)


def simulate(seed: int, days: int, symbols: int, accounts: int, firms: int) -> Path:
    out = CACHE / f"pump-s{seed}-d{days}-n{symbols}-a{accounts}-f{firms}"
    if not (out / "labels.jsonl").exists():
        subprocess.run([sys.executable, "-m", "kabuguard.cli", "simulate", "--out", str(out), "--seed", str(seed),
                        "--days", str(days), "--symbols", str(symbols), "--accounts", str(accounts),
                        "--firms", str(firms), "--quiet"], check=True)
    return out


def policy_with(overrides: list[str]):
    """The default policy with `name=value` overrides of pump_surveillance parameters."""
    import dataclasses  # noqa: PLC0415

    from kabuguard.policy import load_policy  # noqa: PLC0415

    policy = load_policy()
    params = dict(policy.detectors["pump_surveillance"])
    for item in overrides:
        key, value = item.split("=", 1)
        if key not in params:
            raise SystemExit(f"--set: pump_surveillance has no parameter `{key}`")
        params[key] = float(value)
    return dataclasses.replace(policy, detectors={**policy.detectors, "pump_surveillance": params})


def replay(run: Path, market_only: bool, policy=None, tag: str = "") -> tuple[list[dict], float, int]:
    from kabuguard.replay import replay as run_replay  # noqa: PLC0415

    events = run / "events"
    paths = [events / "reference.jsonl.gz", events / "market_bars.parquet"] if market_only else [events]
    out = run / (("replay-market" if market_only else "replay-full") + tag)
    t0 = time.perf_counter()
    summary = run_replay(paths, out, policy=policy, quiet=True)
    seconds = time.perf_counter() - t0
    alerts = [json.loads(line) for line in (out / "alerts.jsonl").open()]
    return [a for a in alerts if any(r.startswith("volume_price_surge") for r in a.get("reasons", ()))], seconds, summary.events


def symbol_days(run: Path) -> int:
    table = pq.read_table(run / "events" / "market_bars.parquet", columns=["symbol", "ts"])
    return len({(s, t[:10]) for s, t in zip(table.column("symbol").to_pylist(), table.column("ts").to_pylist())})


def market_onsets(run: Path, episodes: list[dict], rise: float = 0.02) -> None:
    """Each episode's market footprint: the first bar after `start` that closes `rise` above the
    last close at or before `start` (None when the price never got there during the episode)."""
    table = pq.read_table(run / "events" / "market_bars.parquet", columns=["symbol", "ts", "close"]).to_pydict()
    wanted = {ep["symbol"] for ep in episodes}
    bars: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for symbol, ts, close in zip(table["symbol"], table["ts"], table["close"]):
        if symbol in wanted:
            bars[symbol].append((_instant(ts), close))
    for ep in episodes:
        series = sorted(bars[ep["symbol"]])
        before = [c for t, c in series if t <= ep["start_us"]]
        ep["market_onset_us"] = next(
            (t for t, c in series if ep["start_us"] < t <= ep["end_us"] + 60_000_000 and before and c >= before[-1] * (1 + rise)),
            None)


def score(run: Path, alerts: list[dict]) -> dict:
    episodes = [json.loads(line) for line in (run / "labels.jsonl").open() if '"pump_episode"' in line]
    for ep in episodes:
        ep["start_us"], ep["end_us"] = _instant(ep["start"]), _instant(ep["end"])
    market_onsets(run, episodes)
    # Onset alerts, escalations included (a new alert an analyst reads: a detection inside an
    # episode, a false alert outside every one).
    onsets = [a for a in alerts if "volume_multiple" in a.get("evidence", {})]
    escalations = sum(bool(a["evidence"].get("escalated")) for a in onsets)
    ends = [a for a in alerts if a.get("evidence", {}).get("ended")]
    updates = [a for a in alerts if a.get("evidence", {}).get("reassessed")]
    by_symbol: dict[str, list[dict]] = defaultdict(list)
    for a in onsets:
        a["ts_us"] = _instant(a["ts"])
        by_symbol[a["symbol"]].append(a)
    ended = {a["evidence"]["episode_id"]: _instant(a["ts"]) for a in ends}
    rows, used = [], set()
    for ep in sorted(episodes, key=lambda e: e["start_us"]):
        inside = [a for a in by_symbol[ep["symbol"]] if ep["start_us"] <= a["ts_us"] <= ep["end_us"]]
        used.update(a["alert_id"] for a in inside)
        first = min(inside, key=lambda a: a["ts_us"], default=None)
        # An alert raised before the labelled start and still open at it already covers the episode.
        covering = [a for a in by_symbol[ep["symbol"]]
                    if a["ts_us"] < ep["start_us"] < ended.get(a["evidence"]["episode_id"], ep["end_us"] + 1)]
        if covering:
            first = covering[0]
            used.add(first["alert_id"])  # its detection, not also a false onset
        rows.append({
            "symbol": ep["symbol"], "kind": "news" if ep["news"] else "pump", "campaign_id": ep["campaign_id"],
            "start": ep["start"], "detected": first is not None,
            "delay_min": round(max(0, first["ts_us"] - ep["start_us"]) / 60e6, 2) if first else None,
            "open_at_start": bool(covering),
            # The first bar 2% above the close before `start`, in minutes after `start`.
            "market_onset_min": round((ep["market_onset_us"] - ep["start_us"]) / 60e6, 2) if ep["market_onset_us"] else None,
            # Minutes from the start of that bar (a bar's `ts` is its end), signed: an alert raised
            # before the footprint bar began (an earlier leg, an alert open at `start`) is negative.
            "delay_from_market_onset_min": round((first["ts_us"] - ep["market_onset_us"]) / 60e6 + 1, 2)
            if first and ep["market_onset_us"] else None,
            "assessment": first["evidence"]["assessment"] if first else None,
            "onsets_inside": len(inside), "evidence": first["evidence"] if first else None,
        })
    false = [a for a in onsets if a["alert_id"] not in used]
    days = symbol_days(run)
    pumps = [r for r in rows if r["kind"] == "pump"]
    delays = [r["delay_min"] for r in pumps if r["detected"]]
    visible = [r for r in pumps if r["market_onset_min"] is not None]
    return {
        "episodes": rows,
        "pumps": len(pumps), "pumps_detected": len(delays),
        "pumps_within_2_min": sum(d <= 2.0 for d in delays),
        "max_delay_min": max(delays, default=None),
        # Episodes whose price rose 2% within the episode, and those detected within 2 minutes of
        # that bar's start (the bar ending 1 minute after it is the earliest possible alert), or
        # before it.
        "pumps_visible": len(visible),
        "visible_detected_within_2_min_of_market_onset": sum(
            r["detected"] and r["delay_from_market_onset_min"] is not None and r["delay_from_market_onset_min"] <= 2.0 for r in visible),
        "visible_detected": sum(r["detected"] for r in visible),
        "news": sum(r["kind"] == "news" for r in rows),
        "news_alerted": sum(r["kind"] == "news" and r["detected"] for r in rows),
        "symbol_days": days, "onset_alerts": len(onsets), "end_alerts": len(ends), "reassessments": len(updates),
        "escalations": escalations,
        "false_onsets": len(false), "false_per_symbol_day": round(len(false) / days, 5) if days else None,
        "false": [{k: a[k] for k in ("ts", "symbol")} | {"evidence": a["evidence"]} for a in false],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", required=True)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--symbols", type=int, default=300)
    ap.add_argument("--accounts", type=int, default=5000)
    ap.add_argument("--firms", type=int, default=1)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--verbose", action="store_true", help="print every episode and every false alert")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="override a pump_surveillance parameter of the default policy")
    ap.add_argument("--modes", default="market,full", help="market (bars alone), full (whole stream)")
    args = ap.parse_args()
    policy = policy_with(args.set)
    results = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        run = simulate(seed, args.days, args.symbols, args.accounts, args.firms)
        results[seed] = {}
        for mode in args.modes.split(","):
            alerts, seconds, events = replay(run, market_only=mode == "market", policy=policy)
            res = score(run, alerts)
            res["replay_seconds"], res["replay_events"] = round(seconds, 1), events
            results[seed][mode] = res
            delays = [r["delay_min"] for r in res["episodes"] if r["kind"] == "pump" and r["detected"]]
            print(f"seed {seed} {mode:6s}: pumps detected {res['pumps_detected']}/{res['pumps']}, "
                  f"within 2 min of start {res['pumps_within_2_min']}, delays {sorted(delays)}; with a market footprint "
                  f"{res['pumps_visible']}: detected {res['visible_detected']}, within 2 min of market onset "
                  f"{res['visible_detected_within_2_min_of_market_onset']}; "
                  f"news alerted {res['news_alerted']}/{res['news']}; false onsets {res['false_onsets']} "
                  f"on {res['symbol_days']} symbol-days = {res['false_per_symbol_day']}/symbol-day; "
                  f"ends {res['end_alerts']}, reassessments {res['reassessments']}, escalations {res['escalations']}")
            if mode == "full" or args.verbose:
                for r in res["episodes"]:
                    print(f"    {r['kind']:4s} {r['symbol']} {r['start']} {r['campaign_id'] or ''} detected={r['detected']} "
                          f"delay={r['delay_min']} open_at_start={r['open_at_start']} market_onset={r['market_onset_min']} from_onset={r['delay_from_market_onset_min']} assessment={r['assessment']} onsets={r['onsets_inside']}")
            if args.verbose:
                for a in res["false"]:
                    print("    false:", json.dumps(a))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
