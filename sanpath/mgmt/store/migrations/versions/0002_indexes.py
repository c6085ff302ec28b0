"""Indexes for a pool of many hosts: each daemon reads its own host's PBDs and PIFs, and message
readers follow the newest messages."""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_pbd_host_uuid", "pbd", ["host_uuid"])
    op.create_index("ix_message_timestamp", "message", ["timestamp"])


def downgrade() -> None:
    op.drop_index("ix_message_timestamp", "message")
    op.drop_index("ix_pbd_host_uuid", "pbd")
