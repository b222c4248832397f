"""`kabuguard serve`: the online decision service (embedded by default, Redis and PostgreSQL in production)."""

from __future__ import annotations

import os

import click

from kabuguard.cli.keys import config_option
from kabuguard.cli.replay import policy_option
from kabuguard.service.settings import SettingsError, load_settings


@click.command()
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8000).")
@click.option("--workers", type=int, default=None, help="Worker processes (default 1; more need --state redis://…).")
@click.option("--state", default=None, help="`memory` (default, embedded) or a redis:// URL shared by the workers.")
@click.option("--db", default=None, help="sqlite:///PATH (default sqlite:///kabuguard.db) or postgresql://… (postgres://…).")
@policy_option
@config_option
def serve(host: str | None, port: int | None, workers: int | None, state: str | None, db: str | None,
          policy_path: str | None, config: str | None) -> None:
    """Serve decisions over HTTP: POST /v1/events and the read endpoints, behind API keys.

    Settings come from the options, then KABUGUARD_* environment variables, then the config
    file (docs/service.md lists them). Create a key first with `kabuguard keys create`.
    """
    import uvicorn

    from kabuguard.cli.keys import migrate
    from kabuguard.policy import PolicyError, load_policy

    try:
        settings = load_settings(config, host=host, port=port, workers=workers, state=state, db=db, policy=policy_path)
        load_policy(settings.policy or None)  # the workers load it again: a bad one stops here, before them
    except (SettingsError, PolicyError) as exc:
        raise click.UsageError(str(exc)) from None
    if not 0 <= settings.port <= 65535:
        raise click.UsageError(f"port {settings.port} is not a TCP port (0-65535)")
    if settings.redis():
        _check_redis(settings.state)
    migrate(settings.db)
    # Workers are separate processes: they read the same settings from the environment.
    os.environ.update(settings.to_env())
    uvicorn.run("kabuguard.service.app:factory", factory=True, host=settings.host, port=settings.port,
                workers=settings.workers, access_log=False, log_config=None, lifespan="on",
                timeout_graceful_shutdown=5)


def _check_redis(url: str) -> None:
    """A Redis that answers but refuses the URL's password or database stops the start: the
    service ran deciding every event in degraded mode, saying only that Redis was unreachable.
    One that does not answer is degraded mode, which the service survives and leaves by itself."""
    import asyncio

    from kabuguard.service.redis_client import Redis, ReplyError

    async def ping() -> None:
        async with asyncio.timeout(3.0):
            await Redis(url).ping()

    try:
        asyncio.run(ping())
    except ReplyError as exc:
        if str(exc).startswith(_REFUSALS):
            raise click.UsageError(f"state: Redis refused the URL's password or database: {exc}") from None
    except Exception:  # noqa: BLE001 - unreachable, hung or loading now: the workers start degraded and recover
        pass


# Replies to AUTH and SELECT that no wait will change (a reply such as LOADING will).
_REFUSALS = ("WRONGPASS", "NOAUTH", "NOPERM", "ERR AUTH", "ERR invalid password", "ERR DB index",
             "ERR invalid DB index")

