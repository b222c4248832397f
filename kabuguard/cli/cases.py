"""`kabuguard cases labels`: closed cases' dispositions as a labels file for `kabuguard evaluate`."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click
import msgspec

from kabuguard.cli.folders import make_out
from kabuguard.cli.keys import database_options, open_database


@click.group()
def cases() -> None:
    """Cases worked in the analyst console."""


@cases.command()
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The labels file to write (JSON lines); replaced only once every label is written.")
@database_options
def labels(out: Path, db: str | None, config: str | None) -> None:
    """Write labels from closed cases: fraud and benign dispositions label each decision of the
    case's accounts around its alerts; unsure cases give none. Use with `kabuguard evaluate --labels`."""
    from kabuguard.console.cases import labels as case_labels

    # Written beside `out` and renamed over it at the end: a database that cannot be opened, or a
    # failure halfway, leaves an earlier labels file as it was.
    folder = make_out(out.parent)
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=f".{out.name}.", suffix=".partial")
    except OSError as exc:
        raise click.UsageError(f"cannot write the labels file {out}: {exc.strerror}") from None
    partial = Path(name)
    try:
        n = 0
        with os.fdopen(fd, "wb") as fh:
            for label in case_labels(open_database(db, config).engine):
                fh.write(msgspec.json.encode(label) + b"\n")
                n += 1
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    click.echo(f"{n} labels written to {out}")
