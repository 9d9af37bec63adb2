"""Model limits: each model's context size learned from a server's length rejection.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the column types in core/store/models.py at this revision.
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "model_limits",
        sa.Column("model", sa.String(), primary_key=True),
        sa.Column("context_tokens", sa.Integer(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("model_limits")
