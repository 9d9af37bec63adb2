"""Unit tests: rendering Markdown for Telegram, and which messages become which Inbound."""

from __future__ import annotations

import random
from typing import Any

import pytest
from telegram import Message

from adapters.telegram import BotIdentity, render, rendered_length, to_inbound
from adapters.telegram.format import MAX_ENTITIES, clean_entities
from adapters.telegram.inbound import addressed_to
from core.conversation import RUNNING_THREAD
from core.streaming import split_final, visible_preview
from tests.fakes.random_markdown import random_markdown
from tests.fakes.telegram_server import ApiError, FakeTelegram, utf16_len

BOT = BotIdentity(id=7000001, username="threadline_test_bot")


def _accepted(text: str, entities: list[dict[str, Any]]) -> None:
    """Raise unless the fake Bot API (Telegram's rules) accepts this text and entities."""
    FakeTelegram()._check_entities(text, entities)
    assert utf16_len(text) <= 4096
    assert text.strip()


def test_every_stage_of_a_stream_renders_to_valid_entities() -> None:
    rng = random.Random(4)
    for _ in range(30):
        markdown = random_markdown(rng)
        for end in range(1, len(markdown), max(1, len(markdown) // 40)):
            preview = visible_preview(markdown[:end])
            if not preview.strip():
                continue
            rendered = render(preview)
            _accepted(rendered.text, list(rendered.entities))


def test_an_unclosed_code_fence_renders_as_code() -> None:
    rendered = render("Look:\n\n```python\nprint('hi')\nx = 1")
    assert rendered.text.endswith("print('hi')\nx = 1")
    assert [e["type"] for e in rendered.entities] == ["pre"]
    assert rendered.entities[0].get("language") == "python"


def test_lengths_are_utf16_units_of_the_rendered_text() -> None:
    assert rendered_length("**😀**") == 2
    assert rendered_length("`a`") == 1
    rendered = render("😀 **bold**")
    assert rendered.entities == ({"type": "bold", "offset": 3, "length": 4},)


def test_split_parts_fit_after_rendering_and_keep_code_in_code_blocks() -> None:
    code = "\n".join(f"value_{i} = compute('🧪 {i}')" for i in range(400))
    markdown = "# Title\n\n" + "Some *prose* here. " * 200 + "\n\n```python\n" + code + "\n```\n"
    parts = split_final(markdown, 4096, rendered_length)
    assert len(parts) >= 3
    for part in parts:
        rendered = render(part)
        _accepted(rendered.text, list(rendered.entities))
    lines = [line for part in parts for line in render(part).text.split("\n")]
    assert sum(1 for line in lines if line.startswith("value_")) == 400


def test_entities_are_cleaned_to_what_telegram_accepts() -> None:
    entities = [
        {"type": "bold", "offset": 0, "length": 5},
        {"type": "italic", "offset": 3, "length": 5},  # overlaps partially: dropped
        {"type": "pre", "offset": 6, "length": 4},
        {"type": "bold", "offset": 7, "length": 1},  # inside pre: dropped
        {"type": "code", "offset": 9, "length": 9},  # clipped to the text
        {"type": "bold", "offset": 3, "length": 0},  # empty: dropped
    ]
    cleaned = clean_entities(entities, 12)
    assert cleaned == [
        {"type": "bold", "offset": 0, "length": 5},
        {"type": "pre", "offset": 6, "length": 4},
    ]
    many = [{"type": "bold", "offset": i * 2, "length": 1} for i in range(150)]
    assert len(clean_entities(many, 300)) == MAX_ENTITIES


def test_the_fake_refuses_bad_entities_like_telegram() -> None:
    with pytest.raises(ApiError, match="can't parse entities"):
        _accepted("hello", [{"type": "bold", "offset": 3, "length": 5}])
    with pytest.raises(ApiError, match="can't parse entities"):
        _accepted(
            "hello",
            [
                {"type": "bold", "offset": 0, "length": 3},
                {"type": "italic", "offset": 2, "length": 3},
            ],
        )


# -- inbound -----------------------------------------------------------------------------


def _message(tg: FakeTelegram, chat: int, user: dict[str, Any], text: str, **kw: Any) -> Message:
    tg.send(chat, user, text, deliver=False, **kw)
    data = tg.last_update.get("message") or tg.last_update["edited_message"]
    message = Message.de_json(data, None)
    assert message is not None
    return message


def test_private_messages_are_the_running_conversation() -> None:
    tg = FakeTelegram(username=BOT.username, bot_id=BOT.id)
    alice = tg.user("Alice", "Smith")
    chat = tg.private_chat(alice)
    inbound = to_inbound(_message(tg, chat, alice, "hello there"), BOT)
    assert inbound is not None
    assert inbound.key.thread == RUNNING_THREAD and inbound.is_direct
    assert (inbound.key.space, inbound.key.channel) == (str(chat), str(chat))
    assert inbound.author_name == "Alice Smith" and inbound.reply_to is None
    start = to_inbound(_message(tg, chat, alice, "/start"), BOT)
    assert start is not None and start.text == "/help"


def test_group_messages_need_a_mention_a_command_or_a_reply() -> None:
    tg = FakeTelegram(username=BOT.username, bot_id=BOT.id)
    group = tg.group(-1001, "G")
    bob = tg.user("Bob", username="bob")
    plain = _message(tg, group, bob, "just talking")
    assert addressed_to(plain, BOT) is False and to_inbound(plain, BOT) is None
    mention = to_inbound(_message(tg, group, bob, f"hey @{BOT.username} what's up"), BOT)
    assert mention is not None and mention.text == "hey  what's up"
    assert mention.key.thread == mention.message_id and not mention.is_direct
    command = to_inbound(_message(tg, group, bob, f"/new@{BOT.username}"), BOT)
    assert command is not None and command.text == "/new"
    assert to_inbound(_message(tg, group, bob, "/new@other_bot"), BOT) is None
    bare = to_inbound(_message(tg, group, bob, "/help"), BOT)
    assert bare is not None and bare.text == "/help"
    assert to_inbound(_message(tg, group, bob, "/unknown"), BOT) is None
    # a reply to someone else's message: only the store knows
    first = tg.send(group, bob, "a question", deliver=False)
    reply = _message(tg, group, bob, "a reply", reply_to=first)
    assert addressed_to(reply, BOT) is None
    continued = to_inbound(reply, BOT)
    assert continued is not None and continued.reply_to == str(first)
    assert not continued.addressed and continued.continues_reply  # the core decides
    bot_said = {"id": BOT.id, "is_bot": True, "first_name": "Threadline"}
    other_bot = {"id": 99, "is_bot": True, "first_name": "Other"}
    answer = tg.send(group, bot_said, "an answer", deliver=False)
    assert addressed_to(_message(tg, group, bob, "more", reply_to=answer), BOT) is True
    assert to_inbound(_message(tg, group, other_bot, f"@{BOT.username} hi"), BOT) is None


def test_topic_messages_are_scoped_to_the_topic() -> None:
    tg = FakeTelegram(username=BOT.username, bot_id=BOT.id)
    group = tg.group(-1002, "Forum", forum=True)
    bob = tg.user("Bob")
    topic = tg.create_topic(group, "Ideas", bob)
    plain = _message(tg, group, bob, "talking in the topic", topic=topic)
    assert plain.reply_to_message is not None  # Telegram's topic root, not a reply
    assert addressed_to(plain, BOT) is False
    inbound = to_inbound(_message(tg, group, bob, f"@{BOT.username} idea", topic=topic), BOT)
    assert inbound is not None and inbound.reply_to is None
    assert inbound.key.channel == f"{group}:{topic}" and inbound.key.space == str(group)
