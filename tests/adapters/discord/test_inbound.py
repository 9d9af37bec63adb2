"""Unit tests of `to_inbound`: where the bot answers, the conversation key and the model text."""

from __future__ import annotations

from dataclasses import replace

from adapters.discord.inbound import (
    ChannelKind,
    DiscordMessage,
    chain_key,
    dm_key,
    model_text,
    thread_key,
    to_inbound,
)
from core.conversation import RUNNING_THREAD, Attachment

BOT = "100"
GUILD = "200"
CHANNEL = "300"
THREAD = "400"


def message(**changes: object) -> DiscordMessage:
    base = DiscordMessage(
        message_id="500",
        channel_id=CHANNEL,
        guild_id=GUILD,
        kind=ChannelKind.TEXT,
        author_id="42",
        author_name="Alice",
        author_is_bot=False,
        content=f"<@{BOT}> hello",
        mentions={BOT: "Threadline"},
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_a_mention_in_a_channel_starts_a_chain_rooted_at_the_message() -> None:
    inbound = to_inbound(message(), bot_id=BOT)
    assert inbound is not None
    assert inbound.key == chain_key(GUILD, CHANNEL, "500")
    assert inbound.text == "hello"
    assert inbound.author_name == "Alice"
    assert not inbound.is_direct
    assert inbound.event_id == "message:500"


def test_unmentioned_channel_messages_are_ignored_unless_they_continue_a_chain() -> None:
    plain = message(content="hello", mentions={})
    assert to_inbound(plain, bot_id=BOT) is None
    reply = replace(plain, reference_id="499")
    inbound = to_inbound(reply, bot_id=BOT)
    assert inbound is not None and inbound.reply_to == "499"
    assert not inbound.addressed and inbound.continues_reply  # the core decides
    assert to_inbound(reply, bot_id=BOT, require_mention=True) is None


def test_everyone_and_role_mentions_do_not_count_as_mentioning_the_bot() -> None:
    assert to_inbound(message(content="@everyone hi <@&200>", mentions={}), bot_id=BOT) is None


def test_threads_are_one_conversation_answered_once_the_bot_takes_part() -> None:
    in_thread = message(kind=ChannelKind.THREAD, channel_id=THREAD, content="more", mentions={})
    inbound = to_inbound(in_thread, bot_id=BOT)
    assert inbound is not None and inbound.key == thread_key(GUILD, THREAD)
    assert not inbound.addressed and inbound.continues_thread  # the core decides
    assert to_inbound(in_thread, bot_id=BOT, require_mention=True) is None
    mentioned = to_inbound(message(kind=ChannelKind.THREAD, channel_id=THREAD), bot_id=BOT)
    assert mentioned is not None and mentioned.key == thread_key(GUILD, THREAD)


def test_dms_are_the_running_conversation_and_replies_route_through_core() -> None:
    dm = message(guild_id=None, kind=ChannelKind.DM, content="hi", mentions={}, reference_id="7")
    inbound = to_inbound(dm, bot_id=BOT)
    assert inbound is not None
    assert inbound.key == dm_key(CHANNEL)
    assert inbound.key.thread == RUNNING_THREAD
    assert inbound.key.space == "dm"
    assert inbound.is_direct and inbound.reply_to == "7"


def test_bots_own_messages_and_system_messages_are_ignored() -> None:
    assert to_inbound(message(author_is_bot=True), bot_id=BOT) is None
    assert to_inbound(message(author_id=BOT), bot_id=BOT) is None
    assert to_inbound(message(is_chat=False), bot_id=BOT) is None
    assert to_inbound(message(content=f"<@{BOT}>   "), bot_id=BOT) is None


def test_model_text_strips_the_bot_and_names_other_users() -> None:
    msg = message(
        content=f"<@!{BOT}> ask <@77> and <@88>  about it",
        mentions={BOT: "Threadline", "77": "Bob"},
    )
    assert model_text(msg, BOT) == "ask @Bob and <@88> about it"


def test_attachments_alone_are_answered() -> None:
    files = (Attachment(name="a.txt", url="https://cdn.example/a.txt"),)
    inbound = to_inbound(message(content=f"<@{BOT}>", attachments=files), bot_id=BOT)
    assert inbound is not None and inbound.attachments == files
