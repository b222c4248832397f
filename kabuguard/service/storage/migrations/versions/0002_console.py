"""The console: users, sessions, cases, the append-only audit log, containment, the webhook outbox;
the event log gains the account, symbol and time the console reads it by.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("account_id", sa.String(200), nullable=True))
        batch.add_column(sa.Column("symbol", sa.String(32), nullable=True))
        batch.add_column(sa.Column("ts_us", sa.BigInteger, nullable=True))
    op.create_index("ix_events_account", "events", ["firm", "account_id", "ts_us"])
    op.create_index("ix_events_symbol", "events", ["firm", "symbol", "ts_us"])
    op.create_table(
        "users",
        sa.Column("user_id", _Seq, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("disabled_at", sa.String(40), nullable=True),
    )
    op.create_table(
        "sessions",
        sa.Column("token_sha256", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("expires_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "cases",
        sa.Column("case_id", _Seq, primary_key=True, autoincrement=True),
        sa.Column("firm", sa.String(64), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("assignee", sa.String(64), nullable=True),
        sa.Column("disposition", sa.String(16), nullable=True),
        sa.Column("opened_by", sa.String(64), nullable=False),
        sa.Column("opened_at", sa.String(40), nullable=False),
        sa.Column("closed_at", sa.String(40), nullable=True),
    )
    op.create_table(
        "case_alerts",
        sa.Column("case_id", sa.BigInteger, primary_key=True),
        sa.Column("alert_id", sa.String(240), primary_key=True),
    )
    op.create_table(
        "case_accounts",
        sa.Column("case_id", sa.BigInteger, primary_key=True),
        sa.Column("account_id", sa.String(200), primary_key=True),
    )
    op.create_table(
        "case_comments",
        sa.Column("seq", _Seq, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.BigInteger, nullable=False, index=True),
        sa.Column("author", sa.String(64), nullable=False),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
    )
    op.create_table(
        "audit_log",
        sa.Column("seq", _Seq, primary_key=True, autoincrement=True),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("firm", sa.String(64), nullable=True),
        sa.Column("target", sa.String(300), nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
    )
    op.create_table(
        "containment_actions",
        sa.Column("action_id", sa.String(32), primary_key=True),
        sa.Column("firm", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(200), nullable=False),
        sa.Column("measures", sa.String(200), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("alert_id", sa.String(240), nullable=True),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("dry_run", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("ix_containment_account", "containment_actions", ["firm", "account_id"])
    op.create_table(
        "webhook_outbox",
        sa.Column("seq", _Seq, primary_key=True, autoincrement=True),
        sa.Column("action_id", sa.String(32), nullable=False),
        sa.Column("receiver", sa.String(500), nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_us", sa.BigInteger, nullable=False),
        sa.Column("claimed_until_us", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("delivered_at", sa.String(40), nullable=True),
        sa.Column("last_error", sa.String(300), nullable=True),
        sa.UniqueConstraint("action_id", "receiver", name="uq_webhook_action_receiver"),
    )
    op.create_index("ix_webhook_due", "webhook_outbox", ["delivered_at", "next_attempt_us"])
    # The audit log is append-only in the database itself, not only by convention in the code.
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
                   "$$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$")
        op.execute("CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
                   "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()")
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
                       "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    for table in ("webhook_outbox", "containment_actions", "audit_log", "case_comments", "case_accounts",
                  "case_alerts", "cases", "sessions", "users"):
        op.drop_table(table)
    op.drop_index("ix_events_symbol", "events")
    op.drop_index("ix_events_account", "events")
    with op.batch_alter_table("events") as batch:
        for column in ("ts_us", "symbol", "account_id"):
            batch.drop_column(column)
