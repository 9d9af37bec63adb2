"""Turns a Discord message into an Inbound: where the bot answers and what the model reads."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import discord

from core.conversation import RUNNING_THREAD, Attachment, ConversationKey, Inbound

PLATFORM = "discord"
DM_SPACE = "dm"

_USER_MENTION = re.compile(r"<@!?(\d+)>")


class ChannelKind(enum.Enum):
    """Where a message was sent."""

    DM = "dm"
    TEXT = "text"  # a server text channel (or one the cache does not know)
    THREAD = "thread"  # a thread channel (public, private or a forum post)


@dataclass(frozen=True, slots=True)
class DiscordMessage:
    """The facts of one gateway message that decide whether and how the bot answers it."""

    message_id: str
    channel_id: str
    guild_id: str | None
    kind: ChannelKind
    author_id: str
    author_name: str
    author_is_bot: bool
    content: str
    mentions: Mapping[str, str] = field(default_factory=dict)  # user id -> display name
    reference_id: str | None = None
    is_chat: bool = True  # a default message or a reply, not a system message
    attachments: tuple[Attachment, ...] = ()

    @property
    def space(self) -> str:
        """The conversation key's space: the guild id, or "dm"."""
        return self.guild_id or DM_SPACE


def from_message(message: discord.Message) -> DiscordMessage:
    """The facts of a discord.py `Message` (no I/O)."""
    channel = message.channel
    if message.guild is None:
        kind = ChannelKind.DM
    elif isinstance(channel, discord.Thread):
        kind = ChannelKind.THREAD
    else:
        kind = ChannelKind.TEXT
    reference = message.reference
    reference_id = None
    if (
        reference is not None
        and reference.message_id is not None
        and reference.type is discord.MessageReferenceType.reply
    ):
        reference_id = str(reference.message_id)
    return DiscordMessage(
        message_id=str(message.id),
        channel_id=str(channel.id),
        guild_id=None if message.guild is None else str(message.guild.id),
        kind=kind,
        author_id=str(message.author.id),
        author_name=message.author.display_name,
        author_is_bot=message.author.bot or message.author.system,
        content=message.content,
        mentions={str(user.id): user.display_name for user in message.mentions},
        reference_id=reference_id,
        is_chat=message.type in (discord.MessageType.default, discord.MessageType.reply),
        attachments=tuple(
            Attachment(name=a.filename, url=a.url, mime_type=a.content_type)
            for a in message.attachments
        ),
    )


def mentions_bot(message: DiscordMessage, bot_id: str) -> bool:
    """Whether the message mentions the bot as a user (not @everyone, @here or a role)."""
    return bot_id in message.mentions


def model_text(message: DiscordMessage, bot_id: str) -> str:
    """The text the model reads: the bot's mention removed, other users' mentions by name."""

    def name(match: re.Match[str]) -> str:
        user_id = match.group(1)
        if user_id == bot_id:
            return ""
        shown = message.mentions.get(user_id)
        return f"@{shown}" if shown else match.group(0)

    text = _USER_MENTION.sub(name, message.content)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def dm_key(channel_id: str) -> ConversationKey:
    """The running conversation of a DM channel (core follows /new and branches)."""
    return ConversationKey(PLATFORM, DM_SPACE, channel_id, RUNNING_THREAD)


def thread_key(guild_id: str, thread_id: str) -> ConversationKey:
    """A Discord thread channel: the whole thread is one conversation."""
    return ConversationKey(PLATFORM, guild_id, thread_id, thread_id)


def chain_key(guild_id: str, channel_id: str, root_id: str) -> ConversationKey:
    """A reply chain in a server channel, named after the message that started it."""
    return ConversationKey(PLATFORM, guild_id, channel_id, root_id)


def to_inbound(
    message: DiscordMessage, *, bot_id: str, require_mention: bool = False
) -> Inbound | None:
    """The Inbound for `message`, or None when the bot must not answer it.

    DMs and mentions are addressed to the bot. Unless mentions are required, the core also
    answers a message in a thread the bot takes part in and a reply to a message of one of its
    conversations. In a server channel a new conversation is the reply chain the message
    starts, named after it.
    """
    if message.author_is_bot or message.author_id == bot_id or not message.is_chat:
        return None
    text = model_text(message, bot_id)
    if not text and not message.attachments:
        return None
    direct = message.kind is ChannelKind.DM
    addressed = direct or mentions_bot(message, bot_id)
    unprompted_ok = not require_mention
    if addressed is False and not unprompted_ok:
        return None
    in_thread = message.kind is ChannelKind.THREAD
    if direct:
        key = dm_key(message.channel_id)
    elif in_thread:
        key = thread_key(message.space, message.channel_id)
    else:
        key = chain_key(message.space, message.channel_id, message.message_id)
    if not addressed and not in_thread and message.reference_id is None:
        return None  # channel chatter: nothing it could continue
    return Inbound(
        key=key,
        message_id=message.message_id,
        author_id=message.author_id,
        author_name=message.author_name,
        text=text,
        is_direct=direct,
        reply_to=message.reference_id,
        event_id=f"message:{message.message_id}",
        attachments=message.attachments,
        addressed=addressed,
        continues_thread=in_thread and not addressed,
        continues_reply=not addressed,
    )
