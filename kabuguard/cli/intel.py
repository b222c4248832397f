"""`kabuguard intel`: share indicators with peers and the regulator (STIX 2.1 over TAXII 2.1)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from kabuguard.cli.folders import make_out
from kabuguard.cli.keys import database_options, open_database


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
@click.option("--firm", required=True, help="The sharing firm, named so in the bundle (`intel stats` counts firms by "
              "it); in a run of several firms, only its findings are exported.")
@click.option("--phish", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Alerts of `kabuguard phish watch` (JSON lines) to include as phishing domain and URL indicators.")
@click.option("--min-accounts", type=click.IntRange(min=1), default=2, show_default=True,
              help="Share an address, device or agent only when it served flagged events on this many accounts.")
@click.option("--modified", help="The version (STIX `modified`, RFC 3339 with offset) of every object of the firm; "
              "default: now, so that this export supersedes what it corrects. Pin it for reproducible output.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def export(run_dir: Path, events: tuple[Path, ...], out: Path, tlp: str, firm: str, phish: Path | None,
           min_accounts: int, modified: str | None, quiet: bool) -> None:
    """Write a STIX 2.1 bundle of what the run's decisions and alerts established.

    Account ids appear only as keyed pseudonyms: set KABUGUARD_INTEL_KEY to a secret of this firm.
    Exits 1 when some event lines were rejected (listed on stderr with file, line and reason), 0 otherwise.
    """
    from kabuguard.intel.export import RunError, export_bundle
    from kabuguard.intel.pseudonym import MissingKey, Pseudonymiser

    try:
        pseudonymise = Pseudonymiser.from_env()
        make_out(out.parent)  # before the work: a folder that cannot be made is a usage error, not a traceback after it
        exported = export_bundle(run_dir, events, firm, tlp, pseudonymise, phish, min_accounts, quiet, modified)
    except (MissingKey, RunError, FileNotFoundError) as exc:
        raise click.UsageError(str(exc)) from None
    bundle = exported.bundle
    out.write_text(json.dumps(bundle, indent=1, ensure_ascii=False) + "\n")
    kinds: dict[str, int] = {}
    for obj in bundle["objects"]:
        kinds[obj["type"]] = kinds.get(obj["type"], 0) + 1
    click.echo(", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    click.echo(f"written to {out}")
    if exported.not_addresses:
        values = sorted(exported.not_addresses)
        click.echo(f"left out the `ip` of {sum(exported.not_addresses.values())} flagged events, not an IP address: "
                   + ", ".join(map(repr, values[:5])) + (f" and {len(values) - 5} more" if len(values) > 5 else ""), err=True)
    for line in exported.rejected:
        click.echo(f"rejected {line.file}:{line.line}: {line.reason}", err=True)
    if exported.rejected:
        click.echo(f"{len(exported.rejected)} rejected lines: the bundle lacks what they held", err=True)
        sys.exit(1)


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
@database_options
def create_collection(collection_id: str, title: str, description: str, readers: str, writers: str,
                      db: str | None, config: str | None) -> None:
    """Create a collection with its read and write rights."""
    from sqlalchemy.exc import IntegrityError

    from kabuguard.intel.taxii.store import TaxiiError, TaxiiStore

    store = TaxiiStore(open_database(db, config).engine)
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
@click.option("--added-after", help="Only objects the server added after this timestamp (incremental pulls): "
              "the one the previous pull printed as `next pull: --added-after …`.")
def pull(url: str, collection_id: str, out: Path, user: str, key_env: str, added_after: str | None) -> None:
    """Pull a TAXII 2.1 collection (URL: discovery or API root) into indicator events.

    Each event's `ts` is now, its arrival here: detection uses it from now on, never for the past.
    """
    import os

    import requests
    from taxii2client.exceptions import TAXIIServiceException

    from kabuguard.intel.pull import Feed, PullSummary, indicator_events, now

    key = os.environ.get(key_env, "")
    if not key:
        raise click.UsageError(f"{key_env} is not set: export the API key the server gave this firm")
    make_out(out.parent)
    summary = PullSummary()
    arrived = now()
    try:
        feed = Feed(url, collection_id, user, key)
        lines = indicator_events(feed.objects(added_after), lambda _: arrived, summary, feed.identities)
    except LookupError as exc:
        raise click.UsageError(str(exc)) from None
    except (requests.RequestException, TAXIIServiceException) as exc:
        raise click.ClickException(f"{url}: {exc}") from None
    out.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
    skipped = ", ".join(f"{why} {n}" for why, n in sorted(summary.skipped.items())) or "none"
    click.echo(f"{summary.objects} objects, {summary.indicators} indicators: {summary.written} written to {out} "
               f"({summary.withdrawn} withdrawing a value: revoked or expired); skipped: {skipped}")
    resume = feed.last_added or added_after  # nothing new: the same point again
    if resume:
        click.echo(f"next pull: --added-after {resume}")
    for name, reason in summary.rejected:
        click.echo(f"rejected {name}: {reason}", err=True)
    if summary.rejected:
        sys.exit(1)  # the peer sent objects this firm cannot read (listed on stderr)


@intel.command()
@click.argument("bundles", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--taxii", "url", help="The figures of a TAXII collection of `kabuguard serve` instead (discovery or API "
              "root URL), as its GET /v1/intel/stats counts them: each report for the firm whose key posted it.")
@click.option("--collection", "collection_id", help="With --taxii: the collection firms report to.")
@click.option("--user", default="kabuguard", show_default=True, help="With --taxii: HTTP Basic user name.")
@click.option("--key-env", default="KABUGUARD_TAXII_KEY", show_default=True, help="With --taxii: variable holding the API key.")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True, help="Targeted symbols to list.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON (the shape of GET /v1/intel/stats).")
def stats(bundles: tuple[Path, ...], url: str | None, collection_id: str | None, user: str, key_env: str,
          top: int, as_json: bool) -> None:
    """Across firms: the FSA's monthly figures and the most targeted symbols, from shared bundles."""
    import os

    from kabuguard.intel.stats import aggregate, remote_figures

    if bool(url) == bool(bundles) or bool(url) != bool(collection_id):
        raise click.UsageError("give bundle files, or --taxii URL with --collection ID")
    if url:
        import requests

        key = os.environ.get(key_env, "")
        if not key:
            raise click.UsageError(f"{key_env} is not set: export the API key the server gave you")
        try:
            figures = remote_figures(url, collection_id or "", user, key, top)
        except LookupError as exc:
            raise click.UsageError(str(exc)) from None
        except (requests.RequestException, ValueError) as exc:
            raise click.ClickException(f"{url}: {exc}") from None
    else:
        objects = []
        for path in bundles:
            try:
                objects.extend(json.loads(path.read_text())["objects"])
            except (ValueError, KeyError, TypeError):
                raise click.UsageError(f"{path}: not a STIX bundle (a JSON object with `objects`)") from None
        figures = aggregate(objects, top)
    for left_out in figures["skipped"]:
        click.echo(f"skipped {left_out['object']}: {left_out['reason']}", err=True)
    if as_json:
        click.echo(json.dumps(figures, indent=1, ensure_ascii=False))
    else:
        _tables(figures)
    if figures["skipped"]:
        sys.exit(1)  # input objects were left out (listed on stderr)


def _tables(figures: dict) -> None:
    """The figures as Markdown tables."""
    click.echo("| month | firms affected | firms with unauthorised trades | unauthorised accesses | unauthorised trades "
               "| sell (oku yen) | buy (oku yen) |")
    click.echo("|---|---|---|---|---|---|---|")
    for m in figures["months"]:
        click.echo(f"| {m['month']} | {m['firms_affected']} | {m['firms_with_unauthorised_trades']} | "
                   f"{m['unauthorised_access_count']} | {m['unauthorised_trade_count']} | {m['sell_amount_oku_yen']:.2f} | "
                   f"{m['buy_amount_oku_yen']:.2f} |")
    click.echo("\n| symbol | firms | accounts | buy orders | bought (JPY) | sold (JPY) | first seen | last seen |")
    click.echo("|---|---|---|---|---|---|---|---|")
    for s in figures["top_symbols"]:
        click.echo(f"| {s['symbol']} | {len(s['firms'])} | {s['accounts']} | {s['buy_orders']} | {s['buy_notional_jpy']:,.0f} | "
                   f"{s['sell_notional_jpy']:,.0f} | {s['first_seen'][:16]} | {s['last_seen'][:16]} |")
