"""Progress bars for long work, on stderr so that stdout stays clean for data."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

_console = Console(stderr=True)


def progress(quiet: bool = False) -> Progress:
    """A rich progress display; `quiet` (or a non-terminal stderr in CI) keeps it silent."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=_console, disable=quiet, transient=False,
    )
