"""`kabuguard evaluate`: score a replay's decisions and alerts against labels."""

from __future__ import annotations

from pathlib import Path

import click

from kabuguard.cli.folders import make_out
from kabuguard.evaluate import evaluate_run, summary_lines
from kabuguard.evaluate.inputs import IncompleteRun


@click.command()
@click.option(
    "--labels",
    "labels_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="labels.jsonl: one line per activity event (event_id, fraud, ...), plus pump_episode lines.",
)
@click.option(
    "--run",
    "run_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The --out folder of `kabuguard replay` (decisions.jsonl, alerts.jsonl).",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for metrics.json, report.html and evaluate-rejected.jsonl (created if absent).",
)
@click.option(
    "--bars",
    "bars",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="The market bars the run replayed (files or folders; repeatable): false symbol alerts "
    "are then also reported per symbol-day watched.",
)
@click.pass_context
def evaluate(ctx: click.Context, labels_path: Path, run_dir: Path, out_dir: Path, bars: tuple[Path, ...]) -> None:
    """Precision, recall, value stopped and detection delays of a run; writes report.html.

    Exits 1 when an input line was rejected (each is listed in OUT/evaluate-rejected.jsonl).

    \b
    Example:
      kabuguard evaluate --labels sim/labels.jsonl --run run --out eval
      kabuguard evaluate --labels sim/labels.jsonl --run run --out eval --bars sim/events/market_bars.parquet
    """
    make_out(out_dir)
    try:
        metrics = evaluate_run(labels_path, run_dir, out_dir, progress=True, bars=bars)
    except (FileNotFoundError, IncompleteRun) as exc:
        raise click.BadParameter(str(exc), param_hint="--run") from None
    for line in summary_lines(metrics):
        click.echo(line)
    click.echo(f"report: {metrics['outputs']['report']}")
    for r in metrics["inputs"]["rejections"]:  # the first ones (evaluation.REJECTIONS_SHOWN)
        click.echo(f"rejected {r['file']}:{r['line']}: {r['reason']}", err=True)
    if metrics["inputs"]["rejected_lines"]:
        ctx.exit(1)
