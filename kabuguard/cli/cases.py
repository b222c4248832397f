"""`kabuguard cases labels`: closed cases' dispositions as a labels file for `kabuguard evaluate`."""

from __future__ import annotations

from pathlib import Path

import click
import msgspec

from kabuguard.cli.keys import db_option, open_database


@click.group()
def cases() -> None:
    """Cases worked in the analyst console."""


@cases.command()
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The labels file to write (JSON lines).")
@db_option
def labels(out: Path, db: str | None) -> None:
    """Write labels from closed cases: fraud and benign dispositions label each decision of the
    case's accounts around its alerts; unsure cases give none. Use with `kabuguard evaluate --labels`."""
    from kabuguard.console.cases import labels as case_labels

    n = 0
    with out.open("wb") as fh:
        for label in case_labels(open_database(db).engine):
            fh.write(msgspec.json.encode(label) + b"\n")
            n += 1
    click.echo(f"{n} labels written to {out}")
