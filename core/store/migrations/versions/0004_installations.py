"""Installations (sealed workspace credentials) and OAuth install states.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the column types in core/store/models.py at this revision.
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "installations",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("platform", sa.String(), nullable=False),
        sa.Column("enterprise_id", sa.String(), nullable=False, server_default=""),
        sa.Column("team_id", sa.String(), nullable=False, server_default=""),
        sa.Column("is_enterprise_install", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("installed_at", _TS, nullable=False),
        sa.UniqueConstraint("platform", "enterprise_id", "team_id", name="uq_installations"),
    )
    op.create_table(
        "oauth_states",
        sa.Column("state", sa.String(), primary_key=True),
        sa.Column("expires_at", _TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("oauth_states")
    op.drop_table("installations")
