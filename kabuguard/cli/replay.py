"""`kabuguard replay`: decide every login, account change and order of contract files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from kabuguard.cli.folders import make_out
from kabuguard.events.order import SPILL_AFTER
from kabuguard.policy import Policy, PolicyError, load_policy

if TYPE_CHECKING:
    from kabuguard.replay import ReplaySummary


class SparkDidNotStartError(click.ClickException):
    """Spark's session failed to start: an exit code of its own, since 1 says the run finished."""

    exit_code = 3


policy_option = click.option("--policy", "policy_path", type=click.Path(exists=True, dir_okay=False),
                             help="Policy YAML (default: the bundled policy).")


def policy_from(path: str | None) -> Policy:
    """The policy at `path` (the bundled one without it); a malformed file is a usage error naming
    it, before any work (docs/policy.md)."""
    try:
        return load_policy(path)
    except PolicyError as exc:
        raise click.UsageError(str(exc)) from None


@click.command()
# Not checked here: a URI (hdfs://, s3a://) is for Spark to find; a path or URI with no event file
# is a usage error from either engine.
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for decisions.jsonl, alerts.jsonl and rejected.jsonl.")
@policy_option
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--engine", type=click.Choice(["local", "spark"]), default="local", show_default=True,
              help="local: one process (the reference); spark: the same stages on Apache Spark (docs/spark.md).")
@click.option("--master", help="Spark master URL, e.g. local[2] or spark://host:7077 (default: Spark's own).")
@click.option("--partitions", type=click.IntRange(min=1), help="Spark partitions per keyed stage (default: twice the cores).")
@click.option("--parquet", is_flag=True, help="Spark: also write decisions.parquet/ and alerts.parquet/.")
@click.option("--spill-after", type=click.IntRange(min=1), default=SPILL_AFTER, show_default=True,
              help="Local: events sorted in memory; a longer history is sorted in runs on disk under --out.")
def replay(paths: tuple[str, ...], out_dir: str, policy_path: str | None, quiet: bool, engine: str,
           master: str | None, partitions: int | None, parquet: bool, spill_after: int) -> None:
    """Replay contract files (JSONL, JSONL.gz, Parquet or folders) through the detection core.

    Each decision uses only events before it, exactly as the online service would have decided.

    \b
    Exit codes:
      0    finished, every input line read
      1    finished, some input lines rejected (see rejected.jsonl)
      2    usage error (an option, no event file, an input that is an output, no Java or pyspark)
      3    --engine spark: Spark did not start; nothing was decided, --out is marked INCOMPLETE
      130  interrupted; --out is marked INCOMPLETE
    """
    policy = policy_from(policy_path)
    if engine == "spark" and spill_after != SPILL_AFTER:
        raise click.UsageError("--spill-after is for --engine local: Spark sorts on its own disks")
    make_out(out_dir)
    from kabuguard.replay import INCOMPLETE, InputIsOutput

    try:
        summary = _run(paths, out_dir, policy, quiet, engine, master, partitions, parquet, spill_after)
    except KeyboardInterrupt:

        click.echo(f"interrupted: {out_dir} holds only what was decided so far (on Spark, nothing), and "
                   f"{INCOMPLETE} marks it as incomplete; run again to decide everything", err=True)
        sys.exit(130)
    except (FileNotFoundError, InputIsOutput) as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(
        f"{summary.events} events from {summary.files} files ({summary.duplicates} duplicates, "
        f"{summary.rejected} rejected lines); decisions: "
        + ", ".join(f"{k} {v}" for k, v in sorted(summary.decisions.items()))
        + "; alerts: " + (", ".join(f"{k} {v}" for k, v in sorted(summary.alerts.items())) or "none")
    )
    click.echo(f"written to {summary.out_dir}")
    if summary.rejected:
        click.echo(rejection_line(summary), err=True)
        sys.exit(1)


def rejection_line(summary: ReplaySummary, shown: int = 3) -> str:
    """How many lines were rejected, from which files (the most first), and where they are listed.
    A simulator's folder replayed whole reads its answer key as events: that is said outright."""
    by_file = sorted(summary.rejected_files.items(), key=lambda item: (-item[1], item[0]))
    files = ", ".join(f"{n} in {name}" for name, n in by_file[:shown])
    more = f" and {len(by_file) - shown} more files" if len(by_file) > shown else ""
    line = f"{summary.rejected} rejected lines ({files}{more}): see {summary.out_dir / 'rejected.jsonl'}"
    if any(Path(name).name == "labels.jsonl" for name in summary.rejected_files):
        line += ("\nlabels.jsonl is the simulator's answer key, not events: replay its events/ folder "
                 "and give labels.jsonl to `kabuguard evaluate --labels`")
    return line


def _run(paths: tuple[str, ...], out_dir: str, policy: Policy, quiet: bool, engine: str, master: str | None,
         partitions: int | None, parquet: bool, spill_after: int) -> ReplaySummary:
    """The replay on `engine`; raises FileNotFoundError when `paths` hold no event file."""
    if engine == "spark":
        from kabuguard.spark import SparkDidNotStart, SparkUnavailable, check_prerequisites

        try:
            check_prerequisites()
        except SparkUnavailable as exc:
            raise click.UsageError(str(exc)) from None
        from kabuguard.spark import replay_spark

        try:
            return replay_spark(paths, out_dir, policy, master=master, partitions=partitions, quiet=quiet,
                                parquet=parquet)
        except SparkDidNotStart as exc:
            raise SparkDidNotStartError(f"{exc} (nothing was decided; {out_dir} is marked INCOMPLETE)") from None
    if master or partitions or parquet:
        raise click.UsageError("--master, --partitions and --parquet need --engine spark")
    from kabuguard.replay import replay as run

    return run(paths, out_dir, policy, quiet=quiet, spill_after=spill_after)
