"""Initial schema: conversations, messages, platform_messages, processed_events.

Revision ID: 0001
Revises:
Create Date: 2025-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the column types in core/store/models.py at this revision.
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("platform", sa.String(), nullable=False),
        sa.Column("space", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("thread", sa.String(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("meta", sa.Text(), nullable=False, server_default="{}"),
        sa.UniqueConstraint("platform", "space", "channel", "thread", name="uq_conversations_key"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "messages",
        sa.Column("id", _ID, primary_key=True),
        sa.Column(
            "conversation_id",
            _ID,
            sa.ForeignKey("conversations.id", name="fk_messages_conversation", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("author_id", sa.String(), nullable=True),
        sa.Column("author_name", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("token_count", sa.Integer(), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("finished_at", _TS, nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_messages_conversation_id_id", "messages", ["conversation_id", "id"])
    op.create_table(
        "platform_messages",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("platform", sa.String(), nullable=False),
        sa.Column("platform_message_id", sa.String(), nullable=False),
        sa.Column("space", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column(
            "message_id",
            _ID,
            sa.ForeignKey("messages.id", name="fk_platform_messages_message", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "conversation_id",
            _ID,
            sa.ForeignKey(
                "conversations.id", name="fk_platform_messages_conversation", ondelete="CASCADE"
            ),
            nullable=False,
        ),
        sa.UniqueConstraint(
            "platform",
            "platform_message_id",
            "space",
            "channel",
            name="uq_platform_messages_id",
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_platform_messages_message_id", "platform_messages", ["message_id"])
    op.create_table(
        "processed_events",
        sa.Column("platform", sa.String(), primary_key=True),
        sa.Column("event_id", sa.String(), primary_key=True),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_index("ix_processed_events_created_at", "processed_events", ["created_at"])


def downgrade() -> None:
    op.drop_table("processed_events")
    op.drop_table("platform_messages")
    op.drop_table("messages")
    op.drop_table("conversations")
