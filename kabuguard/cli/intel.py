"""`kabuguard intel`: share indicators with peers and the regulator (STIX 2.1 over TAXII 2.1)."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.group()
def intel() -> None:
    """Export, pull and aggregate shared indicators (docs/intel.md)."""


@intel.command()
@click.option("--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Output folder of `kabuguard replay` (decisions.jsonl, alerts.jsonl).")
@click.option("--events", "events", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="The events that run replayed (files or folders; repeatable): addresses, devices and agents come from them.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Bundle file to write (JSON).")
@click.option("--tlp", type=click.Choice(["white", "green", "amber", "red"]), default="amber", show_default=True,
              help="Traffic Light Protocol marking put on every object.")
@click.option("--firm", help="Export this firm's findings only (multi-firm runs), named so in the bundle.")
@click.option("--phish", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Alerts of `kabuguard phish watch` (JSON lines) to include as phishing domain and URL indicators.")
@click.option("--min-accounts", type=click.IntRange(min=1), default=2, show_default=True,
              help="Share an address, device or agent only when it served flagged events on this many accounts.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def export(run_dir: Path, events: tuple[Path, ...], out: Path, tlp: str, firm: str | None, phish: Path | None,
           min_accounts: int, quiet: bool) -> None:
    """Write a STIX 2.1 bundle of what the run's decisions and alerts established.

    Account ids appear only as keyed pseudonyms: set KABUGUARD_INTEL_KEY to a secret of this firm.
    """
    from kabuguard.intel.export import RunError, export_bundle
    from kabuguard.intel.pseudonym import MissingKey, Pseudonymiser

    try:
        bundle = export_bundle(run_dir, events, firm, tlp, Pseudonymiser.from_env(), phish, min_accounts, quiet)
    except (MissingKey, RunError) as exc:
        raise click.UsageError(str(exc)) from None
    out.write_text(json.dumps(bundle, indent=1, ensure_ascii=False) + "\n")
    kinds: dict[str, int] = {}
    for obj in bundle["objects"]:
        kinds[obj["type"]] = kinds.get(obj["type"], 0) + 1
    click.echo(", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    click.echo(f"written to {out}")
