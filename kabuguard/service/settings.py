"""The service's settings: defaults, then a TOML config file, then environment, then the command line.

Each setting `name` is read from the environment as `KABUGUARD_NAME` (upper case) and from the
config file's `[service]` table as `name`; `docs/service.md` lists them all. The embedded
default needs none: in-memory state and a SQLite file in the working directory.
"""

from __future__ import annotations

import logging
import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

_PREFIX = "KABUGUARD_"


class SettingsError(ValueError):
    """A setting is malformed; the message names it and where it came from."""


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    # "memory" (embedded, one worker) or a redis:// URL shared by every worker.
    state: str = "memory"
    # Decisions, alerts, API keys and (embedded) the event log.
    db: str = "sqlite:///kabuguard.db"
    policy: str = ""
    # Prefix of every Redis key, so that several deployments (or tests) can share one Redis.
    redis_prefix: str = "kg:"
    # How long the result of an event_id is kept in Redis for idempotent retries.
    idempotency_ttl_s: int = 7 * 86400
    # Every answer within this; past it (or when a store is down) the policy's fail mode answers.
    deadline_ms: int = 250
    max_body_bytes: int = 4 * 1024 * 1024
    max_batch: int = 10_000
    # Requests per second per API key (shared by the workers through Redis), unless the key sets its own.
    rate_limit: float = 1000.0
    # Outbox records (decisions and alerts committed to Redis whose database write did not
    # finish: a crash, a database outage) older than this are written by a background task.
    outbox_after_s: float = 5.0
    # With Redis: answer once the database has the records too (1), or as soon as Redis has
    # committed state and the outbox (0, the default): both survive a crash of the service.
    wait_for_database: int = 0
    log_level: str = "info"
    # The console (docs/console.md): session cookies marked Secure (sent over HTTPS only; set 0
    # only for plain HTTP on a development machine) and how long a login lasts.
    console_secure_cookie: int = 1
    console_session_hours: float = 12.0
    # The firm's time zone as hours from UTC (Japan: 9): the days the alert queue's date filters
    # mean, as the firm's analysts count them, and the zone the account timeline shows times in.
    console_utc_offset_hours: float = 9.0
    # Containment webhooks: receivers (comma-separated; `FIRM=URL` takes that firm's actions
    # alone, a bare URL every firm's), the HMAC secret shared with them (give it in the
    # environment, KABUGUARD_WEBHOOK_SECRET, not in a file), retry backoff.
    webhook_urls: str = ""
    webhook_secret: str = ""
    webhook_backoff_s: float = 1.0
    webhook_max_backoff_s: float = 300.0

    def redis(self) -> bool:
        return self.state.startswith(("redis://", "rediss://", "unix://"))

    def validate(self) -> Settings:
        if self.state != "memory" and not self.redis():
            raise SettingsError(f"state: expected `memory` or a redis:// URL, got {redacted(self.state)!r}")
        if self.redis():
            _check_redis_url(self.state)
        for name in _POSITIVE:
            if not getattr(self, name) > 0:
                raise SettingsError(f"{name}: must be above 0, got {getattr(self, name)}")
        for name in _FLAGS:
            if getattr(self, name) not in (0, 1):
                raise SettingsError(f"{name}: must be 0 or 1, got {getattr(self, name)}")
        if not isinstance(logging.getLevelName(self.log_level.upper()), int):  # as `configure` sets it
            raise SettingsError(f"log_level: expected one of debug, info, warning, error, critical, got {self.log_level!r}")
        if not -14 <= self.console_utc_offset_hours <= 14:
            raise SettingsError(f"console_utc_offset_hours: expected -14 to 14 (hours from UTC), got {self.console_utc_offset_hours}")
        if not self.db.startswith(("sqlite://", "postgresql://", "postgres://", "postgresql+psycopg://")):
            raise SettingsError(f"db: expected sqlite:///PATH or postgresql://…, got {redacted(self.db)!r}")
        if self.workers < 1:
            raise SettingsError(f"workers: must be at least 1, got {self.workers}")
        if self.workers > 1 and not self.redis():
            raise SettingsError("workers: more than one worker needs shared state: use --state redis://…")
        for firm, url in self.webhook_receivers():
            shown = redacted(url) if firm is None else f"{firm}={redacted(url)}"
            if not url.lower().startswith(("http://", "https://")) or firm == "":
                raise SettingsError(f"webhook_urls: expected URL or FIRM=URL with an http(s) URL, got {shown!r}")
            problem = _unsendable(url)
            if problem:
                raise SettingsError(f"webhook_urls: {shown!r}: {problem}")
        if self.receivers() and not self.webhook_secret:
            raise SettingsError("webhook_secret: webhook_urls are set but no secret to sign with "
                                "(set KABUGUARD_WEBHOOK_SECRET)")
        return self

    def webhook_receivers(self) -> list[tuple[str | None, str]]:
        """Each entry of `webhook_urls` as (firm, URL); firm None for a bare URL. An entry is
        scoped when what precedes its first `=` is no URL's start (has no `:` or `/`)."""
        entries = []
        for entry in (e.strip() for e in self.webhook_urls.split(",")):
            head, eq, tail = entry.partition("=")
            scoped = eq and not any(c in head for c in ":/")
            entries.append((head.strip(), tail.strip()) if scoped else (None, entry))
        return [(firm, url) for firm, url in entries if url or firm is not None]

    def receivers(self, firm: str | None = None) -> list[str]:
        """The webhook URLs, each once: one listed twice is one receiver (it had two outbox rows
        for one action, which the outbox's key refuses, failing the containment). With `firm`,
        those that take its actions: a firm's containment must not reach another firm's systems."""
        return list(dict.fromkeys(url for scope, url in self.webhook_receivers()
                                  if firm is None or scope in (None, firm)))

    def to_env(self) -> dict[str, str]:
        """The settings as environment variables, so that worker processes read the same."""
        return {_PREFIX + f.name.upper(): str(getattr(self, f.name)) for f in fields(self)}


def redacted(url: str) -> str:
    """The URL without its password, for messages: they reach terminals, logs and CI output."""
    from sqlalchemy.engine import make_url  # noqa: PLC0415

    if "@" not in url:  # no user info, no password: shown whole, however malformed
        return url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL SQLAlchemy cannot parse is shown by its scheme only
        return url.split(":", 1)[0] + ":…"


# Settings that must be above 0 (a deadline of -1 ms timed out every database read; a max_batch
# of 0 refused every request), and those that are 0 or 1.
_POSITIVE = ("deadline_ms", "max_body_bytes", "max_batch", "rate_limit", "idempotency_ttl_s", "outbox_after_s",
             "console_session_hours", "webhook_backoff_s", "webhook_max_backoff_s")
_FLAGS = ("wait_for_database", "console_secure_cookie")


def _unsendable(url: str) -> str:
    """Why the webhook client cannot send to `url` (empty if it can): refused at the start, since
    at send time such a URL failed every delivery with an error of the client's own."""
    import httpx  # noqa: PLC0415 - only a service with webhooks needs it

    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:  # its message may quote the URL's parts, the password among them
        return "not a URL the webhook client can parse (a malformed host, port or character)"
    if not parsed.host:
        return "no host"
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        return f"port {parsed.port} is out of range (1 to 65535)"
    return ""


def _check_redis_url(url: str) -> None:
    """A Redis URL the client can use: refused here, not in a worker that then restarts forever."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError as exc:
        raise SettingsError(f"state: {exc} in the Redis URL") from None
    query = parse_qs(parts.query).get("db")  # the client reads `?db=` before the path
    db = query[0] if query else "" if parts.scheme == "unix" else parts.path.strip("/")
    if db and not db.isdigit():
        raise SettingsError(f"state: the Redis database in the URL must be a number, got {db!r}")


# Settings that hold a list, comma-separated in the environment; a TOML list is natural for them.
_LISTS = {"webhook_urls"}


def _coerce(name: str, value: Any, kind: Any, origin: str) -> Any:
    if name in _LISTS and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ",".join(value)
    try:
        if isinstance(value, bool):  # TOML's true/false: an on/off setting's, and no other's
            if name in _FLAGS:
                return int(value)
        elif kind in ("int", int):
            if isinstance(value, float) and not value.is_integer():  # 99.9 is not cut to 99
                raise ValueError(value)
            return int(value)
        elif kind in ("float", float):
            return float(value)
        elif isinstance(value, (str, int, float)):
            return str(value)
    except (TypeError, ValueError, OverflowError):
        pass
    shape = "a list of strings or a comma-separated string" if name in _LISTS else kind
    raise SettingsError(f"{origin}: `{name}` must be {shape}, got {_shown(value)}")


def _shown(value: Any) -> str:
    """A refused setting's value for the message, without what a URL's user info or a secret holds:
    an array or table is told by its shape (its items may be URLs with passwords, or the webhook
    secret), a string by its redacted form."""
    if isinstance(value, list):
        return f"an array of {len(value)}"
    if isinstance(value, dict):
        return "a table"
    return repr(redacted(value)) if isinstance(value, str) else repr(value)


def _service_table(path: str | Path) -> dict[str, Any]:
    """The config file's [service] table. Anything else in the file is refused: a file without
    the table, a misspelt `[servce]` or settings above the table were read as no settings at all."""
    try:
        document = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"{path}: cannot read the config file: {exc}") from None
    others = [f"[{k}]" if isinstance(v, dict) else f"`{k}`" for k, v in document.items() if k != "service"]
    if others:
        raise SettingsError(f"{path}: unexpected {', '.join(others)} outside [service]; the settings go in "
                            f"the [service] table")
    if not isinstance(document.get("service"), dict):
        raise SettingsError(f"{path}: no [service] table; the settings go in it")
    return document["service"]


def load_settings(config: str | Path | None = None, env: dict[str, str] | None = None,
                  **overrides: Any) -> Settings:
    """Defaults < config file (`config` or $KABUGUARD_CONFIG) < environment < `overrides`."""
    env = dict(os.environ if env is None else env)
    values: dict[str, Any] = {}
    types = {f.name: f.type for f in fields(Settings)}
    path = config or env.get(_PREFIX + "CONFIG")
    if path:
        for name, value in _service_table(path).items():
            if name not in types:
                raise SettingsError(f"{path}: unknown setting `{name}` in [service]")
            values[name] = _coerce(name, value, types[name], str(path))
    for name, kind in types.items():
        raw = env.get(_PREFIX + name.upper())
        if raw is not None:
            values[name] = _coerce(name, raw, kind, _PREFIX + name.upper())
    values.update({k: v for k, v in overrides.items() if v is not None})
    return replace(Settings(), **values).validate()
