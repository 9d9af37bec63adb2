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

    @property
    def chat(self) -> tuple[str, str, str]:
        """The chat the conversation lives in: messages of one chat are routed in order."""
        return (self.platform, self.space, self.channel)

    @property
    def is_running(self) -> bool:
        """Whether this key names a chat's running conversation rather than one thread."""
        return self.thread == RUNNING_THREAD

    def in_thread(self, thread: str) -> ConversationKey:
        """The same chat's conversation named `thread`."""
        return ConversationKey(self.platform, self.space, self.channel, thread)


RUNNING_THREAD = ""
"""`ConversationKey.thread` of a chat's running conversation (a DM): the core resolves it to the
thread the chat currently follows (its main thread, or the branch a reply started)."""

MAIN_THREAD = "main"
"""The thread a running conversation follows until a reply starts a branch."""


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
    STREAMING = "streaming"
    """Still being written (or left so by a process that died, until it is taken over)."""


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
    addressed: bool = True
    """The bot was asked directly (a DM, a mention, a reply to the bot, a command for it). An
    unaddressed message is answered only when it continues a conversation (see below)."""
    continues_thread: bool = False
    """Unaddressed: answer when `key` already has a conversation (a thread the bot is in)."""
    continues_reply: bool = False
    """Unaddressed: answer when `reply_to` is a message of a stored conversation."""

    @property
    def claim_id(self) -> str:
        """The id that makes the platform event unique: the adapter's, else the message's."""
        return self.event_id or f"message:{self.key.channel}:{self.message_id}"


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
