"""Detection on one simulated run exported as other firms might: fields left out, addresses shared.

Run: .venv/bin/python bench/eval_exports.py --seed 271828 [--accounts 10000] [--days 28]
     [--variants baseline,cgnat_stable,...] [--json out.json]

The contract makes most fields optional, and firms' networks differ from the simulator's: this
copies one simulated run once per variant, changed as a firm's export would be, replays each
and evaluates it against the same labels, less those of the events it left out (docs/event-contract.md,
"What detection needs from an export"). Only the activity and reference files change; market bars
are copied, or left out. Not a test: it
reports figures, and a variant that loses much says which evidence an export must carry.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eval_detection import replay_and_evaluate, rows_as_they_come, save_rows  # beside this script

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".data"
# Addresses per fixed-line ISP once its customers are put behind carrier-grade NAT.
NAT_POOL = 32


def _without(*fields: str, types: tuple[str, ...] = ("login", "account_change", "order")) -> Callable:
    def change(event: dict[str, Any]) -> dict[str, Any]:
        if event.get("type") in types:
            for field in fields:
                event.pop(field, None)
        return event
    return change


def _dropped(kind: str) -> Callable:
    return lambda event: None if event.get("type") == kind else event


def _carrier_nat(per_session: bool) -> Callable:
    """Each Japanese fixed-line ISP's customers share `NAT_POOL` addresses of one /24 of it:
    chosen per original address (stable, as MAP-E lines are) or per session (as DS-Lite's
    gateway may). Hosting, mobile and foreign addresses stay as they are."""
    from kabuguard.netintel import netintel  # noqa: PLC0415

    pools: dict[str, str] = {}

    def change(event: dict[str, Any]) -> dict[str, Any]:
        ip = event.get("ip")
        net = netintel().lookup(ip) if ip else None
        if net is None or net.kind != "fixed" or net.country != "JP":
            return event
        base = pools.setdefault(net.asn, ip.rsplit(".", 1)[0])
        key = (event.get("session_id") or event["event_id"]) if per_session else ip
        event["ip"] = f"{base}.{zlib.crc32(key.encode()) % NAT_POOL + 1}"
        return event
    return change


VARIANTS: dict[str, Callable[[], Callable | None]] = {
    "baseline": lambda: None,
    "no_device_id": lambda: _without("device_id"),
    "no_device_id_or_user_agent": lambda: _without("device_id", "user_agent"),
    "no_session_id_on_orders_and_changes": lambda: _without("session_id", types=("account_change", "order")),
    "no_account_records": lambda: _dropped("account"),
    "no_instrument_records": lambda: _dropped("instrument"),
    "cgnat_stable": lambda: _carrier_nat(per_session=False),
    "cgnat_per_session": lambda: _carrier_nat(per_session=True),
    "no_executions": lambda: _dropped("execution"),
    # Only the successful logins, as a firm logging sessions rather than attempts exports them.
    "no_failed_logins": lambda: lambda event: None if event.get("type") == "login" and event.get("success") is False
    else event,
    # Activity alone: the firm's own trading, no market data (the bars are the run's Parquet file).
    "no_market_bars": lambda: _dropped("market_bar"),
}


def _export(sim: Path, out: Path, change: Callable | None) -> set[str]:
    """Copies the run's events, each JSON line through `change` (None drops it); returns the
    event ids dropped. The Parquet file (the market bars) is copied whole, or left out when
    `change` drops a made-up bar."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    dropped: set[str] = set()
    for path in sorted((sim / "events").iterdir()):
        if change is not None and path.suffix == ".parquet":
            if change({"type": "market_bar"}) is not None:
                shutil.copy(path, out / path.name)
            continue
        if change is None or not path.name.endswith(".jsonl.gz"):
            shutil.copy(path, out / path.name)
            continue
        with gzip.open(path, "rt") as src, gzip.open(out / path.name, "wt") as dst:
            for line in src:
                event = json.loads(line)
                kept = change(event)
                if kept is None:
                    dropped.add(event["event_id"])
                else:
                    dst.write(json.dumps(kept, separators=(",", ":")) + "\n")
    return dropped


def _labels(sim: Path, base: Path, dropped: set[str]) -> Path:
    """The run's labels, less those of events the export left out: a firm's evaluation can
    only ask for decisions on what it exported."""
    if not dropped:
        return sim / "labels.jsonl"
    kept = base / "labels.jsonl"
    with (sim / "labels.jsonl").open() as src, kept.open("w") as dst:
        for line in src:
            if json.loads(line).get("event_id") not in dropped:
                dst.write(line)
    return kept


def run_variant(sim: Path, name: str) -> dict:
    base = sim.parent / "exports" / name
    dropped = _export(sim, base / "events", VARIANTS[name]())
    m, cpu = replay_and_evaluate(base / "events", _labels(sim, base, dropped), base)
    order, login = m["detection"]["order"], m["detection"]["login"]
    return {"variant": name, "order_precision": round(order["precision"], 4), "order_recall": round(order["recall"], 4),
            "login_precision": round(login["precision"], 4), "login_recall": round(login["recall"], 4),
            "value_stopped": round(m["value_stopped"]["value_stopped"], 4), "replay_cpu_s": round(cpu, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--accounts", type=int, default=10000)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, of: " + ", ".join(VARIANTS))
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants: {', '.join(unknown)}")
    from kabuguard.sim import Config, simulate  # noqa: PLC0415

    sim = CACHE / f"exports-{args.seed}-{args.accounts}-{args.days}" / "sim"
    if not (sim / "labels.jsonl").exists():
        simulate(Config(accounts=args.accounts, days=args.days, seed=args.seed), sim)
    rows = rows_as_they_come(names, lambda name: run_variant(sim, name))
    print(f"\nseed {args.seed}, {args.accounts:,} accounts, {args.days} days")
    print(f"{'export':<38}{'orders P / R':>16}{'logins P / R':>16}{'value stopped':>15}")
    for r in rows:
        print(f"{r['variant']:<38}{r['order_precision']:>8.1%} /{r['order_recall']:>6.1%}"
              f"{r['login_precision']:>8.1%} /{r['login_recall']:>6.1%}{r['value_stopped']:>15.1%}")
    save_rows(args.json, rows)


if __name__ == "__main__":
    main()
