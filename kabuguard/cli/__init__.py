"""The `kabuguard` command line: one group, one module per command family.

Exit codes: 0 on success, 1 when input had rejected lines, 2 on usage errors (click's own).
"""

from __future__ import annotations

import importlib

import click

from kabuguard import __version__

# Each entry is "module:attribute" under kabuguard.cli; imported lazily so that
# `kabuguard --help` stays fast and one family's optional dependency cannot break another.
_COMMANDS: dict[str, str] = {
    "simulate": "simulate:simulate",
    "replay": "replay:replay",
    "evaluate": "evaluate:evaluate",
    "demo": "demo:demo",
    "phish": "phish:phish",
    "serve": "serve:serve",
    "keys": "keys:keys",
    "users": "users:users",
    "cases": "cases:cases",
    "intel": "intel:intel",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        module = importlib.import_module(f"kabuguard.cli.{module_name}")
        return getattr(module, attr)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kabuguard")
def main() -> None:
    """Kabuguard: detect account takeover and the market manipulation riding on it."""
