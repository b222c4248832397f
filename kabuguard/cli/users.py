"""`kabuguard users`: create, list and disable the console's users (roles analyst, lead, admin, auditor)."""

from __future__ import annotations

import sys

import click

from kabuguard.cli.keys import database_options, open_database
from kabuguard.console.models import ROLES


@click.group()
def users() -> None:
    """Users of the analyst console (/console). Passwords are stored as argon2id hashes."""


@users.command()
@click.argument("username")
@click.option("--role", required=True, type=click.Choice(ROLES), help="auditor reads only; the others act.")
@click.option("--firm", help="The firm whose alerts, cases, accounts and audit entries the user sees and acts on.")
@click.option("--all-firms", is_flag=True, help="The user sees and acts on every firm (the deployment's own "
                                                 "team, a regulator's auditor).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (for scripts).")
@database_options
def create(username: str, role: str, firm: str | None, all_firms: bool, password_stdin: bool, db: str | None,
           config: str | None) -> None:
    """Create a user of one firm (--firm) or of all (--all-firms); the password is asked for
    (twice) unless given on standard input."""
    from kabuguard.console.users import UserError, create_user

    if (firm is None) == (not all_firms):
        raise click.UsageError("users create: give --firm FIRM (the user's firm) or --all-firms, one of them")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        create_user(open_database(db, config).engine, username, role, password, firm)
    except UserError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"created {username} ({role}, {f'firm {firm}' if firm else 'all firms'})")


@users.command("list")
@database_options
def list_(db: str | None, config: str | None) -> None:
    """Every user: name, role, firm (`*`: all firms), created, active or disabled."""
    from kabuguard.console.users import list_users

    for row in list_users(open_database(db, config).engine):
        state = f"disabled {row['disabled_at']}" if row["disabled_at"] else "active"
        click.echo(f"{row['username']}\t{row['role']}\t{row['firm'] or '*'}\t{row['created_at']}\t{state}")


@users.command()
@click.argument("username")
@database_options
def disable(username: str, db: str | None, config: str | None) -> None:
    """Disable a user: their sessions stop working at once."""
    from kabuguard.console.users import disable_user

    if not disable_user(open_database(db, config).engine, username):
        raise click.UsageError(f"user {username!r}: no such active user (see `kabuguard users list`)")
    click.echo(f"disabled {username}")
