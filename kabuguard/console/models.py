"""The console's tables (SQLAlchemy Core), on the service's metadata; migration 0002 creates them."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary, String, Table, Text, UniqueConstraint

from kabuguard.service.storage.models import FIRM_MAX, metadata

_Seq = BigInteger().with_variant(Integer(), "sqlite")

ROLES = ("analyst", "lead", "admin", "auditor")
DISPOSITIONS = ("fraud", "benign", "unsure")

users = Table(
    "users", metadata,
    Column("user_id", _Seq, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("password_hash", String(200), nullable=False),  # argon2id
    Column("created_at", String(40), nullable=False),
    Column("disabled_at", String(40), nullable=True),
    # The one firm whose data the user sees and acts on; NULL: every firm (migration 0004).
    Column("firm", String(FIRM_MAX), nullable=True),
)

# A session is a random token in an HttpOnly cookie; only its SHA-256 is stored.
sessions = Table(
    "sessions", metadata,
    Column("token_sha256", String(64), primary_key=True),
    Column("user_id", BigInteger, nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("expires_us", BigInteger, nullable=False),
)

# A login's password check, reserved before it runs (failed or still pending; migration 0005).
login_attempts = Table(
    "login_attempts", metadata,
    Column("attempt_id", _Seq, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Column("client", String(64), nullable=False, server_default=""),  # a digest of the client's address
    Index("ix_login_attempts_user", "username", "at_us"),
)

cases = Table(
    "cases", metadata,
    Column("case_id", _Seq, primary_key=True, autoincrement=True),
    Column("firm", String(FIRM_MAX), nullable=False),
    Column("title", String(300), nullable=False),
    Column("status", String(16), nullable=False),  # open, closed
    Column("assignee", String(64), nullable=True),
    Column("disposition", String(16), nullable=True),
    Column("opened_by", String(64), nullable=False),
    Column("opened_at", String(40), nullable=False),
    Column("closed_at", String(40), nullable=True),
)

case_alerts = Table(
    "case_alerts", metadata,
    Column("case_id", BigInteger, primary_key=True),
    Column("alert_id", String(240), primary_key=True),
)

case_accounts = Table(
    "case_accounts", metadata,
    Column("case_id", BigInteger, primary_key=True),
    Column("account_id", String(200), primary_key=True),
)

case_comments = Table(
    "case_comments", metadata,
    Column("seq", _Seq, primary_key=True, autoincrement=True),
    Column("case_id", BigInteger, nullable=False, index=True),
    Column("author", String(64), nullable=False),
    Column("at", String(40), nullable=False),
    Column("text", Text, nullable=False),
)

# Append-only (triggers refuse UPDATE and DELETE): who did what, when and why.
audit_log = Table(
    "audit_log", metadata,
    Column("seq", _Seq, primary_key=True, autoincrement=True),
    Column("at", String(40), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("firm", String(FIRM_MAX), nullable=True),
    Column("target", String(300), nullable=True),
    Column("reason", Text, nullable=False),
    Column("detail", Text, nullable=True),  # JSON
)

containment_actions = Table(
    "containment_actions", metadata,
    Column("action_id", String(32), primary_key=True),
    Column("firm", String(FIRM_MAX), nullable=False),
    Column("account_id", String(200), nullable=False),
    Column("measures", String(200), nullable=False),  # comma-separated
    Column("source", String(64), nullable=False),  # console, or playbook:<name>
    Column("alert_id", String(240), nullable=True),
    Column("actor", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", String(40), nullable=False),
    Column("dry_run", Integer, nullable=False, server_default="0"),
    Index("ix_containment_account", "firm", "account_id"),
)

# One row per action and receiver; a delivery is retried with backoff until the receiver says 2xx.
webhook_outbox = Table(
    "webhook_outbox", metadata,
    Column("seq", _Seq, primary_key=True, autoincrement=True),
    Column("action_id", String(32), nullable=False),
    Column("receiver", String(500), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_us", BigInteger, nullable=False),
    Column("claimed_until_us", BigInteger, nullable=False, server_default="0"),
    Column("delivered_at", String(40), nullable=True),
    Column("last_error", String(300), nullable=True),
    UniqueConstraint("action_id", "receiver", name="uq_webhook_action_receiver"),
    Index("ix_webhook_due", "delivered_at", "next_attempt_us"),
)
