"""Console logins reserve their password check: `login_attempts`, one row per failed or pending
attempt, so concurrent guesses cannot all pass the lockout before any failure is recorded.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_attempts",
        sa.Column("attempt_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("at_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_login_attempts_user", "login_attempts", ["username", "at_us"])


def downgrade() -> None:
    op.drop_table("login_attempts")
