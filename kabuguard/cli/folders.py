"""The output folder a command writes into, made before any work, so a path that cannot be a
folder is a usage error (exit 2) naming it, not a traceback after the work is done."""

from __future__ import annotations

from pathlib import Path

import click


def make_out(path: str | Path) -> Path:
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.UsageError(f"cannot create the output folder {folder}: {exc.strerror}") from None
    return folder
