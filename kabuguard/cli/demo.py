"""`kabuguard demo`: simulate a brokerage under attack, replay it, evaluate it, in one go."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import click

from kabuguard.cli.folders import make_out
from kabuguard.cli.replay import policy_from, policy_option

_MARKER = ".kabuguard-demo"


@click.command()
@click.option("--out", "out_dir", default="kabuguard-demo", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for sim/, run/ and eval/ (a previous demo there is replaced).")
@click.option("--accounts", default=5000, show_default=True, type=click.IntRange(min=20), help="Customer accounts.")
@click.option("--days", default=28, show_default=True, type=click.IntRange(1, 366), help="Calendar days simulated.")
@click.option("--seed", default=7, show_default=True, type=click.IntRange(min=0), help="Simulation seed.")
@policy_option
@click.option("--quiet", is_flag=True, help="No progress bars.")
def demo(out_dir: Path, accounts: int, days: int, seed: int, policy_path: str | None, quiet: bool) -> None:
    """Simulate a brokerage hit by a 2025-style campaign, replay it and evaluate the decisions.

    Prints the headline figures and the path of the HTML report. Runs on the embedded default:
    no server needed. Exits 1 when the replay or the evaluation rejected input lines.
    """
    from kabuguard.evaluate import evaluate_run, summary_lines
    from kabuguard.progress import progress
    from kabuguard.replay import replay
    from kabuguard.sim import Config, simulate

    policy = policy_from(policy_path)  # before the previous demo is removed
    if out_dir.exists() and any(out_dir.iterdir()):
        if not (out_dir / _MARKER).exists():
            raise click.UsageError(f"{out_dir} exists and is not a Kabuguard demo folder; choose another --out.")
        shutil.rmtree(out_dir)
    make_out(out_dir)  # an empty folder given as --out is fine
    (out_dir / _MARKER).write_text("created by `kabuguard demo`; replaced by the next demo\n")

    try:
        with progress(quiet) as bar:
            task = bar.add_task("simulating", total=days)
            simulate(Config(accounts=accounts, days=days, seed=seed), out_dir / "sim",
                     progress=lambda stage, done: bar.update(task, description=f"simulating {stage}", completed=done))
        summary = replay([out_dir / "sim" / "events"], out_dir / "run", policy, quiet=quiet)
    except KeyboardInterrupt:  # 1 would say the input had rejected lines
        click.echo(f"interrupted: {out_dir} holds part of a demo; the next demo replaces it", err=True)
        sys.exit(130)
    click.echo(f"replayed {summary.events:,} events: " + ", ".join(f"{k} {v:,}" for k, v in sorted(summary.decisions.items())))
    metrics = evaluate_run(out_dir / "sim" / "labels.jsonl", out_dir / "run", out_dir / "eval", progress=not quiet)
    for line in summary_lines(metrics):
        click.echo(line)
    click.echo(f"report: {metrics['outputs']['report']}")
    if summary.rejected:
        click.echo(f"{summary.rejected} event lines rejected by the replay: see {summary.out_dir / 'rejected.jsonl'}",
                   err=True)
    if summary.rejected or metrics["inputs"]["rejected_lines"]:  # as replay and evaluate exit
        sys.exit(1)
