"""SQLModel tables of the history store; migrations/versions must create exactly these."""

from datetime import datetime

from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, Index, Integer, LargeBinary, Text
from sqlalchemy import UniqueConstraint as Unique
from sqlmodel import Field, SQLModel

# BIGINT on PostgreSQL; plain INTEGER on SQLite, where only that is the auto-incrementing rowid.
# SQLite tables use AUTOINCREMENT so an id is never reused after `forget`: a reply still
# streaming into a forgotten turn must not overwrite a newer one.
BigId = BigInteger().with_variant(Integer(), "sqlite")
Timestamp = DateTime(timezone=True)


class Conversation(SQLModel, table=True):
    """One conversation, identified by its `ConversationKey`; `meta` is a JSON object."""

    __tablename__ = "conversations"
    __table_args__ = (
        Unique("platform", "space", "channel", "thread", name="uq_conversations_key"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True))
    platform: str
    space: str
    channel: str
    thread: str
    created_at: datetime = Field(sa_column=Column(Timestamp, nullable=False))
    updated_at: datetime = Field(sa_column=Column(Timestamp, nullable=False))
    meta: str = Field(default="{}", sa_column=Column(Text, nullable=False, server_default="{}"))


class Message(SQLModel, table=True):
    """One turn of a conversation; `(conversation_id, id)` serves the newest-N query."""

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_conversation_id_id", "conversation_id", "id"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True))
    conversation_id: int = Field(
        sa_column=Column(
            BigId,
            ForeignKey("conversations.id", name="fk_messages_conversation", ondelete="CASCADE"),
            nullable=False,
        )
    )
    role: str
    content: str = Field(sa_column=Column(Text, nullable=False))
    author_id: str | None = None
    author_name: str | None = None
    status: str
    token_count: int | None = None
    created_at: datetime = Field(sa_column=Column(Timestamp, nullable=False))
    finished_at: datetime | None = Field(default=None, sa_column=Column(Timestamp, nullable=True))


class PlatformMessage(SQLModel, table=True):
    """A chat-platform message id that belongs to a stored turn (a turn may have several).

    Unique per platform, space and channel of the conversation; the unique index leads with
    `(platform, platform_message_id)` so a lookup without space or channel uses it too.
    """

    __tablename__ = "platform_messages"
    __table_args__ = (
        Unique(
            "platform",
            "platform_message_id",
            "space",
            "channel",
            name="uq_platform_messages_id",
        ),
        Index("ix_platform_messages_message_id", "message_id"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True))
    platform: str
    platform_message_id: str
    space: str
    channel: str
    message_id: int = Field(
        sa_column=Column(
            BigId,
            ForeignKey("messages.id", name="fk_platform_messages_message", ondelete="CASCADE"),
            nullable=False,
        )
    )
    conversation_id: int = Field(
        sa_column=Column(
            BigId,
            ForeignKey(
                "conversations.id", name="fk_platform_messages_conversation", ondelete="CASCADE"
            ),
            nullable=False,
        )
    )


class ProcessedEvent(SQLModel, table=True):
    """A platform event already claimed by some process; the primary key makes claims atomic."""

    __tablename__ = "processed_events"
    __table_args__ = (Index("ix_processed_events_created_at", "created_at"),)

    platform: str = Field(primary_key=True)
    event_id: str = Field(primary_key=True)
    created_at: datetime = Field(sa_column=Column(Timestamp, nullable=False))


class StreamingAnswer(SQLModel, table=True):
    """An answer still streaming: who writes it, where it shows, and its open message's text.

    The row goes when the answer is finished. A row whose `heartbeat_at` is stale belongs to a
    process that died; another process finishes that answer visibly (`HistoryStore.orphans`).
    """

    __tablename__ = "streaming_answers"
    __table_args__ = (Index("ix_streaming_answers_heartbeat_at", "heartbeat_at"),)

    message_id: int = Field(
        sa_column=Column(
            BigId,
            ForeignKey("messages.id", name="fk_streaming_answers_message", ondelete="CASCADE"),
            primary_key=True,
        )
    )
    platform: str
    owner: str
    heartbeat_at: datetime = Field(sa_column=Column(Timestamp, nullable=False))
    target: str = Field(sa_column=Column(Text, nullable=False))
    open_message: str | None = None
    open_text: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))


class ModelLimit(SQLModel, table=True):
    """A model's context size as a server's length rejection taught it (only ever lowered)."""

    __tablename__ = "model_limits"

    model: str = Field(primary_key=True)
    context_tokens: int
    updated_at: datetime = Field(sa_column=Column(Timestamp, nullable=False))


class Installation(SQLModel, table=True):
    """An app installed in a workspace: its sealed credentials (never a token in clear).

    One row per platform, enterprise and team (the latest install wins); `sealed` is the
    platform's installation record, encrypted by `core.secret_box.SecretBox`.
    """

    __tablename__ = "installations"
    __table_args__ = (Unique("platform", "enterprise_id", "team_id", name="uq_installations"),)

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True))
    platform: str
    enterprise_id: str = Field(default="")
    team_id: str = Field(default="")
    is_enterprise_install: bool = False
    sealed: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    installed_at: datetime = Field(sa_column=Column(Timestamp, nullable=False))


class OAuthState(SQLModel, table=True):
    """A state handed to an OAuth install; consumed once, before it expires."""

    __tablename__ = "oauth_states"

    state: str = Field(primary_key=True)
    expires_at: datetime = Field(sa_column=Column(Timestamp, nullable=False))
