"""The database tables (SQLAlchemy Core); Alembic migrations under `migrations/` create them."""

from __future__ import annotations

from sqlalchemy import (BigInteger, Column, Float, Index, Integer, LargeBinary, MetaData, String, Table,
                        UniqueConstraint)

metadata = MetaData()

# SQLite wants INTEGER for an auto-incrementing primary key; PostgreSQL gets a BIGINT identity.
_Seq = BigInteger().with_variant(Integer(), "sqlite")
# A firm's name as every table holds it.
FIRM_MAX = 64

api_keys = Table(
    "api_keys", metadata,
    Column("key_id", String(32), primary_key=True),
    Column("firm", String(FIRM_MAX), nullable=False),
    Column("name", String(200), nullable=False),
    Column("secret_sha256", String(64), nullable=False),  # the key is random: a fast hash suffices
    Column("rate_limit", Float, nullable=True),  # requests per second; null: the service default
    Column("created_at", String(40), nullable=False),
    Column("revoked_at", String(40), nullable=True),
)

# Each decision as the replay writes it (`body`, the exact JSON line) plus columns to query by.
decisions = Table(
    "decisions", metadata,
    Column("seq", _Seq, primary_key=True, autoincrement=True),
    Column("firm", String(FIRM_MAX), nullable=False),
    Column("event_id", String(200), nullable=False),
    Column("ts_us", BigInteger, nullable=False),
    Column("type", String(32), nullable=False),
    Column("account_id", String(200), nullable=False),
    Column("decision", String(16), nullable=False),
    Column("score", Float, nullable=False),
    Column("body", LargeBinary, nullable=False),
    UniqueConstraint("firm", "event_id", name="uq_decisions_firm_event"),
    Index("ix_decisions_account", "firm", "account_id", "ts_us"),
)

alerts = Table(
    "alerts", metadata,
    Column("seq", _Seq, primary_key=True, autoincrement=True),
    Column("firm", String(FIRM_MAX), nullable=False),
    Column("alert_id", String(240), nullable=False),
    Column("event_id", String(200), nullable=False),
    Column("ts_us", BigInteger, nullable=False),
    Column("type", String(32), nullable=False),
    Column("account_id", String(200), nullable=True),
    Column("status", String(16), nullable=False, server_default="open"),
    Column("body", LargeBinary, nullable=False),
    UniqueConstraint("firm", "alert_id", name="uq_alerts_firm_alert"),
    Index("ix_alerts_time", "firm", "ts_us"),
    Index("ix_alerts_account", "firm", "account_id"),
)

# The embedded service keeps state in memory and rebuilds it from this log at start: every
# event applied, in the order applied (msgpack of the typed record). The console reads an
# account's activity and a symbol's bars from it (`account_id`, `symbol`, `ts_us`, migration 0002).
# A containment applied to the state is logged here too (event_id `~contain:<account key>`,
# empty body), so the rebuild applies it at its place in the order.
events = Table(
    "events", metadata,
    Column("seq", _Seq, primary_key=True, autoincrement=True),
    Column("firm", String(FIRM_MAX), nullable=False),
    Column("event_id", String(200), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("account_id", String(200), nullable=True),
    Column("symbol", String(32), nullable=True),
    Column("ts_us", BigInteger, nullable=True),
    UniqueConstraint("firm", "event_id", name="uq_events_firm_event"),
    Index("ix_events_account", "firm", "account_id", "ts_us"),
    Index("ix_events_symbol", "firm", "symbol", "ts_us"),
)

# TAXII 2.1 (kabuguard/intel/taxii): collections, who may read and write them, their objects
# (every version, each row the object's exact JSON), and the status of each POST.
taxii_collections = Table(
    "taxii_collections", metadata,
    Column("collection_id", String(64), primary_key=True),
    Column("title", String(200), nullable=False),
    Column("description", String(1000), nullable=False, server_default=""),
    Column("created_at", String(40), nullable=False),
)

# One row per firm and collection; firm `*` is every firm with an API key.
taxii_rights = Table(
    "taxii_rights", metadata,
    Column("collection_id", String(64), primary_key=True),
    Column("firm", String(FIRM_MAX), primary_key=True),
    Column("can_read", Integer, nullable=False),
    Column("can_write", Integer, nullable=False),
)

taxii_objects = Table(
    "taxii_objects", metadata,
    Column("seq", _Seq, primary_key=True, autoincrement=True),
    Column("collection_id", String(64), nullable=False),
    Column("stix_id", String(200), nullable=False),
    Column("version", String(40), nullable=False),
    Column("type", String(100), nullable=False),
    Column("date_added", String(40), nullable=False),
    Column("latest", Integer, nullable=False),  # 1 on the newest version of the object only
    Column("added_by", String(FIRM_MAX), nullable=False),
    Column("body", LargeBinary, nullable=False),
    UniqueConstraint("collection_id", "stix_id", "version", name="uq_taxii_object_version"),
    Index("ix_taxii_objects_stix_id", "collection_id", "stix_id"),
)

taxii_status = Table(
    "taxii_status", metadata,
    Column("status_id", String(64), primary_key=True),
    Column("firm", String(FIRM_MAX), nullable=False),
    Column("body", LargeBinary, nullable=False),
)
