"""`kabuguard replay`: decide every login, account change and order of contract files."""

from __future__ import annotations

import sys

import click

from kabuguard.policy import PolicyError, load_policy


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for decisions.jsonl, alerts.jsonl and rejected.jsonl.")
@click.option("--policy", "policy_path", type=click.Path(exists=True, dir_okay=False), help="Policy YAML (default: the bundled policy).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def replay(paths: tuple[str, ...], out_dir: str, policy_path: str | None, quiet: bool) -> None:
    """Replay contract files (JSONL, JSONL.gz, Parquet or folders) through the detection core.

    Each decision uses only events before it, exactly as the online service would have decided.
    Exits 1 when some input lines were rejected (see rejected.jsonl), 0 otherwise.
    """
    from kabuguard.replay import replay as run

    try:
        policy = load_policy(policy_path)
    except PolicyError as exc:
        raise click.UsageError(str(exc)) from None
    summary = run(paths, out_dir, policy, quiet=quiet)
    click.echo(
        f"{summary.events} events from {summary.files} files ({summary.duplicates} duplicates, "
        f"{summary.rejected} rejected lines); decisions: "
        + ", ".join(f"{k} {v}" for k, v in sorted(summary.decisions.items()))
        + "; alerts: " + (", ".join(f"{k} {v}" for k, v in sorted(summary.alerts.items())) or "none")
    )
    click.echo(f"written to {summary.out_dir}")
    if summary.rejected:
        click.echo(f"{summary.rejected} rejected lines: see {summary.out_dir / 'rejected.jsonl'}", err=True)
        sys.exit(1)
