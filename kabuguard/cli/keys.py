"""`kabuguard keys`: create, list and revoke the service's API keys (one firm per key)."""

from __future__ import annotations

from typing import TypeVar

import click

from kabuguard.service.settings import SettingsError, load_settings, redacted

F = TypeVar("F")

config_option = click.option("--config", default=None, type=click.Path(exists=True, dir_okay=False),
                             help="TOML file with a [service] table (or $KABUGUARD_CONFIG).")
_db_option = click.option("--db", default=None, help="The service's database (default: the `db` that `kabuguard serve` "
                          "reads: $KABUGUARD_DB, else the config file's, else sqlite:///kabuguard.db).")


def database_options(command: F) -> F:
    """--db and --config, the database found as `serve` finds it: with --db alone, the keys of a
    service started with --config went to ./kabuguard.db, which it never reads."""
    return _db_option(config_option(command))


def open_database(db: str | None, config: str | None):  # noqa: ANN202 - the import stays lazy
    """The service database at `db` (or as `serve` reads it), migrated to the newest schema."""
    from kabuguard.service.storage import Database

    try:
        url = load_settings(config, db=db).db
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    migrate(url)
    return Database(url)


def migrate(url: str) -> None:
    """Bring the database at `url` to the newest schema, or stop saying why it cannot be opened."""
    from sqlalchemy.exc import SQLAlchemyError

    from kabuguard.service.app import migrate_database

    try:
        migrate_database(url)
    except SQLAlchemyError as exc:  # unreachable server, a folder that does not exist
        raise click.ClickException(f"cannot open the database {redacted(url)}: {exc.orig or exc}") from None


@click.group()
def keys() -> None:
    """API keys of the decision service. A key sees only its firm's data; only its hash is stored."""


@keys.command()
@click.option("--firm", required=True, help="The brokerage this key acts for.")
@click.option("--name", default="", help="What the key is for (e.g. login-platform).")
@click.option("--rate-limit", type=click.FloatRange(min=0, min_open=True, max=1e9), default=None,
              help="Requests per second, more than 0 (default: the service's).")
@database_options
def create(firm: str, name: str, rate_limit: float | None, db: str | None, config: str | None) -> None:
    """Create a key and print it once: it cannot be shown again."""
    from kabuguard.service.auth import create_key

    if rate_limit is not None and rate_limit != rate_limit:  # NaN passes a range check
        raise click.BadParameter("not a number", param_hint="'--rate-limit'")

    try:
        key_id, token = create_key(open_database(db, config), firm, name, rate_limit)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(token)
    click.echo(f"key id {key_id} for firm {firm}: store the key now, it is not kept", err=True)


@keys.command("list")
@database_options
def list_(db: str | None, config: str | None) -> None:
    """Every key: id, firm, name, rate limit, created, revoked."""
    from kabuguard.service.auth import list_keys

    for row in list_keys(open_database(db, config)):
        rate = row["rate_limit"] if row["rate_limit"] is not None else "default"
        click.echo(f"{row['key_id']}\t{row['firm']}\t{row['name'] or '-'}\t{rate}\t{row['created_at']}\t"
                   f"{'revoked ' + row['revoked_at'] if row['revoked_at'] else 'active'}")


@keys.command()
@click.argument("key_id")
@database_options
def revoke(key_id: str, db: str | None, config: str | None) -> None:
    """Revoke a key by its id (effective within seconds on every worker)."""
    from kabuguard.service.auth import revoke_key

    if not revoke_key(open_database(db, config), key_id):
        raise click.UsageError(f"key id {key_id!r}: no such active key (see `kabuguard keys list`)")
    click.echo(f"revoked {key_id}")


@keys.command("webhook-secret")
@click.argument("receiver")
@config_option
def webhook_secret(receiver: str, config: str | None) -> None:
    """Print the secret RECEIVER (one of the webhook_urls) verifies its webhooks with.

    Each receiver's secret is derived from the service's webhook_secret and its URL, so a
    receiver cannot sign for another; give each its own, over a channel fit for secrets.
    """
    from kabuguard.console.webhooks import receiver_secret

    try:
        settings = load_settings(config)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    if not settings.webhook_secret:
        raise click.UsageError("webhook_secret is not set (KABUGUARD_WEBHOOK_SECRET or the config file's [service])")
    if receiver.strip() not in settings.receivers():
        raise click.UsageError(f"{receiver!r} is not among webhook_urls: {', '.join(settings.receivers()) or 'none'}")
    click.echo(receiver_secret(settings.webhook_secret, receiver))
