"""The event log's rows written before revision 0002 get the account, symbol and time the console
reads them by: 0002 added those columns empty, so after the upgrade an account's timeline lacked
every device, address and network of its earlier events, and their next uses were marked new.

Revision ID: 0007
Revises: 0006
"""

import msgspec
import sqlalchemy as sa
from alembic import op

from kabuguard.events.instants import ContractError, parse_ts
from kabuguard.events.model import from_log, log_columns

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_BATCH = 1000


def upgrade() -> None:
    conn = op.get_bind()
    events = sa.table("events", sa.column("seq"), sa.column("body"), sa.column("account_id"), sa.column("symbol"),
                      sa.column("ts_us"))
    fill = (events.update().where(events.c.seq == sa.bindparam("row"))
            .values(account_id=sa.bindparam("account_id"), symbol=sa.bindparam("symbol"), ts_us=sa.bindparam("ts_us")))
    last = 0
    while rows := conn.execute(sa.select(events.c.seq, events.c.body)
                               .where(events.c.seq > last, events.c.ts_us.is_(None))
                               .order_by(events.c.seq).limit(_BATCH)).fetchall():
        last = rows[-1].seq
        found = []
        for seq, body in rows:
            if not body:  # a containment's row: it has its account and no time of its own
                continue
            try:
                event = from_log(bytes(body))
                event.ts_us = event.ts_us or parse_ts(event.ts)
            except (msgspec.MsgspecError, ContractError):  # unreadable: the rebuild names it and leaves it out
                continue
            found.append({"row": seq, **log_columns(event)})
        if found:
            conn.execute(fill, found)


def downgrade() -> None:
    pass  # the columns stay; 0002's downgrade drops them
