"""TAXII 2.1 collections, rights, objects and statuses (kabuguard/intel/taxii).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "taxii_collections",
        sa.Column("collection_id", sa.String(64), primary_key=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.String(1000), nullable=False, server_default=""),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "taxii_rights",
        sa.Column("collection_id", sa.String(64), primary_key=True),
        sa.Column("firm", sa.String(64), primary_key=True),
        sa.Column("can_read", sa.Integer, nullable=False),
        sa.Column("can_write", sa.Integer, nullable=False),
    )
    op.create_table(
        "taxii_objects",
        sa.Column("seq", _Seq, primary_key=True, autoincrement=True),
        sa.Column("collection_id", sa.String(64), nullable=False),
        sa.Column("stix_id", sa.String(200), nullable=False),
        sa.Column("version", sa.String(40), nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("date_added", sa.String(40), nullable=False),
        sa.Column("latest", sa.Integer, nullable=False),
        sa.Column("added_by", sa.String(64), nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("collection_id", "stix_id", "version", name="uq_taxii_object_version"),
    )
    op.create_index("ix_taxii_objects_stix_id", "taxii_objects", ["collection_id", "stix_id"])
    op.create_table(
        "taxii_status",
        sa.Column("status_id", sa.String(64), primary_key=True),
        sa.Column("firm", sa.String(64), nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("taxii_status")
    op.drop_index("ix_taxii_objects_stix_id", "taxii_objects")
    op.drop_table("taxii_objects")
    op.drop_table("taxii_rights")
    op.drop_table("taxii_collections")
