"""Streaming answers: the state of every answer still being written, for crash recovery.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the column types in core/store/models.py at this revision.
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "streaming_answers",
        sa.Column(
            "message_id",
            _ID,
            sa.ForeignKey("messages.id", name="fk_streaming_answers_message", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("platform", sa.String(), nullable=False),
        sa.Column("owner", sa.String(), nullable=False),
        sa.Column("heartbeat_at", _TS, nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("open_message", sa.String(), nullable=True),
        sa.Column("open_text", sa.Text(), nullable=False, server_default=""),
    )
    op.create_index(
        "ix_streaming_answers_heartbeat_at", "streaming_answers", ["heartbeat_at"]
    )


def downgrade() -> None:
    op.drop_table("streaming_answers")
