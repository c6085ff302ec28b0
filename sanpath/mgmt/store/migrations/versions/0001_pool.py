"""The first schema: pool, host, PIF, SR, PBD, secret, message."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _c(name: str, *args: Any, **kw: Any) -> sa.Column[Any]:
    return sa.Column(name, *args, nullable=False, **kw)


def _uuid() -> sa.Column[Any]:
    return sa.Column("uuid", sa.String(36), primary_key=True)


def _other_config() -> sa.Column[Any]:
    return _c("other_config", sa.JSON)


def upgrade() -> None:
    op.create_table("pool", _uuid(), _c("singleton", sa.Integer, unique=True), _c("name_label", sa.String(255)),
                    _c("key_check", sa.Text), _c("created", sa.Float),
                    _other_config())
    op.create_table("host", _uuid(), _c("name_label", sa.String(255), unique=True),
                    _c("iqn", sa.String(223), unique=True),
                    _c("enabled", sa.Boolean),
                    _c("multipathing", sa.Boolean),
                    _c("multipath_handle", sa.String(16)),
                    _c("heartbeat", sa.Float), _other_config())
    op.create_table("pif", _uuid(),
                    _c("host_uuid", sa.String(36), sa.ForeignKey("host.uuid", ondelete="CASCADE")),
                    _c("device", sa.String(64)), _c("mac", sa.String(64)),
                    _c("mtu", sa.Integer), _c("carrier", sa.Boolean),
                    _c("kind", sa.String(32)), _c("master", sa.String(64)),
                    _c("addresses", sa.JSON), _c("purpose", sa.String(16)),
                    _c("present", sa.Boolean), _other_config(),
                    sa.UniqueConstraint("host_uuid", "device"))
    op.create_table("sr", _uuid(), _c("name_label", sa.String(255)),
                    _c("type", sa.String(32)), _c("shared", sa.Boolean),
                    _c("scsi_id", sa.String(255), unique=True),
                    _c("device_config", sa.JSON), _c("sm_config", sa.JSON),
                    _other_config())
    op.create_table("pbd", _uuid(),
                    _c("sr_uuid", sa.String(36), sa.ForeignKey("sr.uuid", ondelete="CASCADE")),
                    _c("host_uuid", sa.String(36), sa.ForeignKey("host.uuid", ondelete="CASCADE")),
                    _c("device_config", sa.JSON), _c("plugged", sa.Boolean),
                    _c("currently_attached", sa.Boolean),
                    _c("generation", sa.Integer),
                    _c("observed_generation", sa.Integer),
                    _c("error", sa.JSON), _other_config(),
                    sa.UniqueConstraint("sr_uuid", "host_uuid"))
    op.create_table("secret", _uuid(), _c("value", sa.Text), _other_config())
    op.create_table("message", _uuid(), _c("name", sa.String(64)),
                    _c("priority", sa.Integer), _c("obj_class", sa.String(16)),
                    _c("obj_uuid", sa.String(36)), _c("timestamp", sa.Float),
                    _c("body", sa.JSON), _c("text", sa.Text),
                    _c("acknowledged", sa.Boolean), _other_config())


def downgrade() -> None:
    for table in ("message", "secret", "pbd", "sr", "pif", "host", "pool"):
        op.drop_table(table)
