"""API keys, decisions, alerts and the embedded event log.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("firm", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("rate_limit", sa.Float, nullable=True),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("revoked_at", sa.String(40), nullable=True),
    )
    op.create_table(
        "decisions",
        sa.Column("seq", _Seq, primary_key=True, autoincrement=True),
        sa.Column("firm", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("ts_us", sa.BigInteger, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("account_id", sa.String(200), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("firm", "event_id", name="uq_decisions_firm_event"),
    )
    op.create_index("ix_decisions_account", "decisions", ["firm", "account_id", "ts_us"])
    op.create_table(
        "alerts",
        sa.Column("seq", _Seq, primary_key=True, autoincrement=True),
        sa.Column("firm", sa.String(64), nullable=False),
        sa.Column("alert_id", sa.String(240), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("ts_us", sa.BigInteger, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("account_id", sa.String(200), nullable=True),
        sa.Column("status", sa.String(16), nullable=False, server_default="open"),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("firm", "alert_id", name="uq_alerts_firm_alert"),
    )
    op.create_index("ix_alerts_time", "alerts", ["firm", "ts_us"])
    op.create_index("ix_alerts_account", "alerts", ["firm", "account_id"])
    op.create_table(
        "events",
        sa.Column("seq", _Seq, primary_key=True, autoincrement=True),
        sa.Column("firm", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("firm", "event_id", name="uq_events_firm_event"),
    )


def downgrade() -> None:
    for table in ("events", "alerts", "decisions", "api_keys"):
        op.drop_table(table)
