"""Console lockout per user name and client: `login_attempts.client`, so that an outsider's
guesses lock a user name out only from the outsider's own address.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("login_attempts") as table:
        table.add_column(sa.Column("client", sa.String(64), nullable=False, server_default=""))
    # No index of its own: a name's attempts are counted by ix_login_attempts_user, per client in that count.


def downgrade() -> None:
    with op.batch_alter_table("login_attempts") as table:
        table.drop_column("client")
