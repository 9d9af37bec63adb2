"""Turns a Telegram message into an Inbound: who is addressed, which conversation, what text."""

from __future__ import annotations

from dataclasses import dataclass

from telegram import Message, MessageEntity

from core.commands import COMMAND_HELP
from core.conversation import RUNNING_THREAD, ConversationKey, Inbound

PLATFORM = "telegram"
_PRIVATE = "private"
_GROUPS = frozenset({"group", "supergroup"})


@dataclass(frozen=True, slots=True)
class BotIdentity:
    """The bot itself, from getMe: its user id and @username (without the @)."""

    id: int
    username: str


def scope_of(message: Message) -> tuple[str, str]:
    """(space, channel) of a message: the chat, and the chat or chat:topic it was sent in."""
    chat = str(message.chat.id)
    topic = topic_of(message)
    return chat, chat if topic is None else f"{chat}:{topic}"


def topic_of(message: Message) -> int | None:
    """The forum topic (message_thread_id) a message belongs to, None outside topics."""
    if message.is_topic_message and message.message_thread_id is not None:
        return message.message_thread_id
    return None


def reply_target(message: Message) -> Message | None:
    """The message this one explicitly replies to.

    In a forum topic every message carries the topic's creation message as `reply_to_message`;
    that is not a reply.
    """
    replied = message.reply_to_message
    if replied is None:
        return None
    topic = topic_of(message)
    if topic is not None and (
        replied.message_id == topic or replied.forum_topic_created is not None
    ):
        return None
    return replied


def is_candidate(message: Message) -> bool:
    """A message from a person, with text, in a private chat or a group."""
    user = message.from_user
    if user is None or user.is_bot:
        return False
    if message.chat.type != _PRIVATE and message.chat.type not in _GROUPS:
        return False
    return bool(message.text or message.caption)


def addressed_to(message: Message, bot: BotIdentity) -> bool | None:
    """Whether a group message is for the bot: True, False (surely not) or None (look it up).

    For the bot: a mention (`@username` or a text mention of it), a command for it
    (`/cmd@username`, or a bare known command), a reply to one of its messages. A command
    for another bot is never for it. A reply to someone else's message is for the bot when
    that message belongs to one of its conversations, which only the store knows (None).
    """
    command = _command_target(message)
    if command is not None:
        name, target = command
        if target:
            return target.lower() == bot.username.lower()
        if name in COMMAND_HELP:
            return True
    if _mentions(message, bot):
        return True
    replied = reply_target(message)
    if replied is None:
        return False
    if replied.from_user is not None and replied.from_user.id == bot.id:
        return True
    return None


def to_inbound(message: Message, bot: BotIdentity) -> Inbound | None:
    """The Inbound for `message`, or None when the bot must not answer it.

    Private chats are one running conversation; in groups the conversation is the reply chain,
    keyed by the message that started it (its own id here; a reply is routed by the core to
    the chain of the message it replies to). A group message that is not addressed to the bot
    but replies to someone else's message is answered only when that message belongs to one
    of the bot's conversations, which the core decides (`continues_reply`).
    """
    if not is_candidate(message):
        return None
    private = message.chat.type == _PRIVATE
    addressed = True
    if not private:
        verdict = addressed_to(message, bot)
        if verdict is False:
            return None
        addressed = verdict is True
    text = _clean_text(message, bot)
    if text is None or not text.strip():
        return None
    space, channel = scope_of(message)
    replied = reply_target(message)
    user = message.from_user
    assert user is not None
    thread = RUNNING_THREAD if private else str(message.message_id)
    return Inbound(
        key=ConversationKey(platform=PLATFORM, space=space, channel=channel, thread=thread),
        message_id=str(message.message_id),
        author_id=str(user.id),
        author_name=author_name(message),
        text=text.strip(),
        is_direct=private,
        reply_to=None if replied is None else str(replied.message_id),
        addressed=addressed,
        continues_reply=not addressed,
    )


def author_name(message: Message) -> str:
    """The sender's full name, else @username, else the user id."""
    user = message.from_user
    if user is None:
        return ""
    full = " ".join(part for part in (user.first_name, user.last_name) if part).strip()
    return full or (user.username or str(user.id))


def _entities(message: Message) -> tuple[str, tuple[MessageEntity, ...]]:
    if message.text:
        return message.text, tuple(message.entities or ())
    return message.caption or "", tuple(message.caption_entities or ())


def _command_target(message: Message) -> tuple[str, str] | None:
    """(name, @target) of a leading bot command, lower-cased name; None without one."""
    text, entities = _entities(message)
    for entity in entities:
        if entity.type == MessageEntity.BOT_COMMAND and entity.offset == 0:
            token = _slice(text, entity.offset, entity.length)
            name, _, target = token[1:].partition("@")
            return name.lower(), target
    if text.startswith("/"):
        token = text.split(maxsplit=1)[0]
        name, _, target = token[1:].partition("@")
        return name.lower(), target
    return None


def _mentions(message: Message, bot: BotIdentity) -> bool:
    text, entities = _entities(message)
    handle = "@" + bot.username.lower()
    return any(_is_self_mention(text, entity, handle, bot) for entity in entities)


def _is_self_mention(text: str, entity: MessageEntity, handle: str, bot: BotIdentity) -> bool:
    if entity.type == MessageEntity.MENTION:
        return _slice(text, entity.offset, entity.length).lower() == handle
    if entity.type == MessageEntity.TEXT_MENTION:
        return entity.user is not None and entity.user.id == bot.id
    return False


def _clean_text(message: Message, bot: BotIdentity) -> str | None:
    """The text for the model: mentions of the bot removed, `/cmd@bot` made `/cmd`.

    None for a command addressed to another bot. `/start` (sent when a chat is opened) asks
    for the help text.
    """
    text, entities = _entities(message)
    handle = "@" + bot.username.lower()
    cuts: list[tuple[int, int, str]] = []  # UTF-16 (offset, length, replacement)
    for entity in entities:
        piece = _slice(text, entity.offset, entity.length)
        if _is_self_mention(text, entity, handle, bot):
            cuts.append((entity.offset, entity.length, ""))
        elif entity.type == MessageEntity.BOT_COMMAND and entity.offset == 0:
            name, _, target = piece.partition("@")
            if target and target.lower() != bot.username.lower():
                return None
            cuts.append((entity.offset, entity.length, name))
    units = text.encode("utf-16-le", "surrogatepass")
    for offset, length, replacement in sorted(cuts, reverse=True):
        units = (
            units[: offset * 2]
            + replacement.encode("utf-16-le", "surrogatepass")
            + units[(offset + length) * 2 :]
        )
    cleaned = units.decode("utf-16-le", "surrogatepass").strip()
    head = cleaned.split(maxsplit=1)[0].lower() if cleaned else ""
    if head == "/start":
        return "/help"
    return cleaned


def _slice(text: str, offset: int, length: int) -> str:
    """`text[offset:offset + length]` in UTF-16 code units, as Telegram counts."""
    units = text.encode("utf-16-le", "surrogatepass")
    return units[offset * 2 : (offset + length) * 2].decode("utf-16-le", "surrogatepass")
