"""The platform-free conversation model: keys, inbound messages and stored turns."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class ConversationKey:
    """Identifies one conversation; the adapter decides what a thread is."""

    platform: str
    space: str
    channel: str
    thread: str

    def __str__(self) -> str:
        return f"{self.platform}:{self.space}:{self.channel}:{self.thread}"


class Role(enum.StrEnum):
    """Who said a turn."""

    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"


class TurnStatus(enum.StrEnum):
    """How a stored turn ended."""

    COMPLETE = "complete"
    PARTIAL = "partial"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file or link that came with an inbound message (kept as a reference only)."""

    name: str
    url: str
    mime_type: str | None = None


@dataclass(frozen=True, slots=True)
class Inbound:
    """One message a person sent the bot, already translated by an adapter."""

    key: ConversationKey
    message_id: str
    author_id: str
    author_name: str
    text: str
    is_direct: bool
    reply_to: str | None = None
    event_id: str | None = None
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True)
class Turn:
    """One stored message of a conversation."""

    role: Role
    content: str
    author_id: str | None = None
    author_name: str | None = None
    status: TurnStatus = TurnStatus.COMPLETE
    platform_message_ids: tuple[str, ...] = ()
    token_count: int | None = None
    id: int | None = None
    created_at: datetime | None = field(default=None, compare=False)
