"""The API's bearer tokens, kept as SHA-256 digests."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("api_token", sa.Column("uuid", sa.String(36), primary_key=True),
                    sa.Column("name_label", sa.String(255), nullable=False, unique=True),
                    sa.Column("digest", sa.String(64), nullable=False, unique=True),
                    sa.Column("created", sa.Float, nullable=False),
                    sa.Column("other_config", sa.JSON, nullable=False))


def downgrade() -> None:
    op.drop_table("api_token")
