"""`kabuguard simulate`: write a synthetic brokerage run with labelled campaigns."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import click

from kabuguard.cli.folders import make_out

# kabuguard.sim.Config's defaults, repeated so that `kabuguard --help` need not import numpy and
# pyarrow; tests/test_sim.py checks that the two agree.
_DEFAULTS = {"accounts": 5000, "days": 14, "seed": 7, "firms": 1, "symbols": 300, "start": "2025-04-07"}


@click.command()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write events/, labels.jsonl and simulation.json into (created; must hold no earlier run).")
@click.option("--accounts", default=_DEFAULTS["accounts"], show_default=True, type=click.IntRange(min=20),
              help="Customer accounts, across all firms.")
@click.option("--days", default=_DEFAULTS["days"], show_default=True, type=click.IntRange(1, 366),
              help="Calendar days to simulate (weekends and TSE holidays have logins but no trading).")
@click.option("--seed", default=_DEFAULTS["seed"], show_default=True, type=click.IntRange(min=0),
              help="Random seed; the same seed writes byte-identical files.")
@click.option("--firms", default=_DEFAULTS["firms"], show_default=True, type=click.IntRange(1, 26),
              help="Brokerages; above 1 every account and activity event carries `firm` and campaigns reach the firms in sequence.")
@click.option("--symbols", default=_DEFAULTS["symbols"], show_default=True, type=click.IntRange(20, 3778),
              help="TSE instruments simulated (each gets one-minute market bars; bars dominate the run time).")
@click.option("--start", default=_DEFAULTS["start"], show_default=True, type=click.DateTime(["%Y-%m-%d"]),
              help="First day (JST). The campaign rate follows the FSA's 2025 figure for the month.")
@click.option("--history-days", type=click.IntRange(min=0), default=None,
              help="Days of ordinary activity before any campaign; a trading day must follow them (default: half "
                   "the run, at most 21, or none when that leaves no trading day).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def simulate(out_dir: Path, accounts: int, days: int, seed: int, firms: int, symbols: int, start: dt.datetime,
             history_days: int | None, quiet: bool) -> None:
    """Simulate a brokerage hit by 2025-style account takeovers and pumps.

    Writes OUT/events/ (reference.jsonl.gz with instruments and opening account states,
    activity-YYYY-MM-DD.jsonl.gz with logins, account changes, orders and executions,
    market_bars.parquet with one-minute bars), OUT/labels.jsonl (ground truth per login,
    account change and order, plus pump_episode lines) and OUT/simulation.json (the summary).
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from kabuguard.sim import Config
    from kabuguard.sim import simulate as run

    try:
        config = Config(accounts=accounts, days=days, seed=seed, firms=firms, symbols=symbols, start=start.date(),
                    history_days=history_days)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if (out_dir / "labels.jsonl").exists() or (out_dir / "events").exists() or (out_dir / "INCOMPLETE").exists():
        raise click.UsageError(f"{out_dir} already holds a run (events/ or labels.jsonl); choose an empty folder or remove it.")
    make_out(out_dir)
    with Progress(TextColumn("simulating {task.description:<10}"), BarColumn(), MofNCompleteColumn(), TextColumn("days"),
                  TimeElapsedColumn(), disable=quiet, transient=True) as bar:
        task = bar.add_task("", total=days)
        try:
            summary = run(config, out_dir, progress=lambda stage, done: bar.update(task, description=stage,
                                                                                     completed=done))
        except KeyboardInterrupt:
            # What was written reads as a shorter run (no error anywhere): say it is not one.
            (out_dir / "INCOMPLETE").write_text("an interrupted simulation: its days, labels and summary stop "
                                                "early; remove this folder and simulate again\n")
            click.echo(f"interrupted: {out_dir} holds part of a run, marked INCOMPLETE; remove it and run again",
                       err=True)
            sys.exit(130)
    events = summary["events"]
    click.echo(f"{sum(events.values())} events (" + ", ".join(f"{k} {v}" for k, v in events.items()) + ")")
    click.echo("labels: " + ", ".join(f"{k} {v}" for k, v in summary["labels"].items()))
    hijacked, traded = summary["hijacked_accounts"], summary["traded_accounts"]
    click.echo(f"{len(summary['campaigns'])} campaigns; hijacked accounts (traded in): "
               + ", ".join(f"{style} {n} ({traded.get(style, 0)})" for style, n in hijacked.items()))
    click.echo(f"written to {out_dir}")
