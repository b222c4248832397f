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


@intel.group()
def collections() -> None:
    """TAXII collections of `kabuguard serve` and which firms may read and write them."""


@collections.command("create")
@click.argument("collection_id")
@click.option("--title", required=True, help="What the collection holds, e.g. 'indicators shared by members'.")
@click.option("--description", default="", help="A longer description shown to clients.")
@click.option("--read", "readers", default="*", show_default=True,
              help="Comma-separated firms (API-key firms) that may read; `*` for every firm.")
@click.option("--write", "writers", default="", help="Comma-separated firms that may add objects; `*` for every firm.")
@click.option("--db", default=None, help="The service's database (default: as `kabuguard serve` reads it).")
def create_collection(collection_id: str, title: str, description: str, readers: str, writers: str,
                      db: str | None) -> None:
    """Create a collection with its read and write rights."""
    from sqlalchemy.exc import IntegrityError

    from kabuguard.cli.keys import open_database
    from kabuguard.intel.taxii.store import TaxiiError, TaxiiStore

    store = TaxiiStore(open_database(db).engine)
    try:
        store.create_collection(collection_id, title, description, _firms(readers), _firms(writers))
    except TaxiiError as exc:
        raise click.UsageError(exc.detail) from None
    except IntegrityError:
        raise click.UsageError(f"collection {collection_id!r} exists already") from None
    click.echo(f"collection {collection_id}: read {readers or 'nobody'}, write {writers or 'nobody'}")


def _firms(text: str) -> list[str]:
    return [f.strip() for f in text.split(",") if f.strip()]


@intel.command()
@click.argument("url")
@click.option("--collection", "collection_id", required=True, help="The collection's id, as the server lists it.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("indicators.jsonl"),
              show_default=True, help="Contract JSON lines of `indicator` events (replay and serve read them).")
@click.option("--user", default="kabuguard", show_default=True, help="HTTP Basic user name sent with the key.")
@click.option("--key-env", default="KABUGUARD_TAXII_KEY", show_default=True,
              help="Environment variable holding the API key (the password) for the server.")
@click.option("--added-after", help="Only objects the server added after this timestamp (incremental pulls).")
def pull(url: str, collection_id: str, out: Path, user: str, key_env: str, added_after: str | None) -> None:
    """Pull a TAXII 2.1 collection (URL: discovery or API root) into indicator events.

    Each event's `ts` is now, its arrival here: detection uses it from now on, never for the past.
    """
    import os

    import requests
    from taxii2client.exceptions import TAXIIServiceException

    from kabuguard.intel.pull import PullSummary, fetch_objects, indicator_events, now

    key = os.environ.get(key_env, "")
    if not key:
        raise click.UsageError(f"{key_env} is not set: export the API key the server gave this firm")
    summary = PullSummary()
    arrived = now()
    try:
        lines = indicator_events(fetch_objects(url, collection_id, user, key, added_after), lambda _: arrived, summary)
    except LookupError as exc:
        raise click.UsageError(str(exc)) from None
    except (requests.RequestException, TAXIIServiceException) as exc:
        raise click.ClickException(f"{url}: {exc}") from None
    out.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
    skipped = ", ".join(f"{why} {n}" for why, n in sorted(summary.skipped.items())) or "none"
    click.echo(f"{summary.objects} objects, {summary.indicators} indicators: {summary.written} written to {out}; "
               f"skipped: {skipped}")
