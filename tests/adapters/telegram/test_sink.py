"""The Telegram sink against the fake Bot API, in process: writes and error translation."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from telegram import Bot
from telegram.request import HTTPXRequest

from adapters.telegram import DraftSupport, Target, TelegramSink
from core.errors import SinkGone, SinkRateLimited
from tests.fakes.telegram_server import FakeTelegram


@pytest.fixture
async def bot(fake_tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Bot]:
    monkeypatch.setenv("PTB_TIMEDELTA", "1")  # RetryAfter.retry_after as a timedelta, no warning
    async with Bot(
        fake_tg.token, base_url=fake_tg.api_url, request=HTTPXRequest(connection_pool_size=8)
    ) as bot:
        yield bot


async def test_group_sink_posts_replies_edits_and_skips_no_op_edits(
    fake_tg: FakeTelegram, bot: Bot
) -> None:
    group = fake_tg.group(-1001, "G")
    question = fake_tg.send(group, fake_tg.user("Bob"), fake_tg.mention("hi"), deliver=False)
    sink = TelegramSink(bot, Target(group, private=False, reply_to=question), fake_tg.bot_id)
    assert not sink.limits.finalize_unchanged
    assert sink.limits.measure("**ab**") == 2
    first = await sink.post("Hello **wor")
    await sink.edit(first, "Hello **wor")  # unchanged: no call
    await sink.edit(first, "Hello **world**")
    assert await sink.finalize(first, "Hello **world**, done") is None
    second = await sink.post("part two")
    [one, two] = fake_tg.bot_messages(group)
    assert (one.text, one.reply_to, one.edits) == ("Hello world, done", question, 2)
    assert one.entities == [{"type": "bold", "offset": 6, "length": 5}]
    assert (two.text, two.reply_to, str(two.message_id)) == ("part two", None, second)
    assert len(fake_tg.calls_of("editMessageText")) == 2


async def test_private_sink_streams_a_draft_and_commits_it(fake_tg: FakeTelegram, bot: Bot) -> None:
    chat = fake_tg.private_chat(fake_tg.user("Ann"))
    sink = TelegramSink(bot, Target(chat, private=True), fake_tg.bot_id)
    assert sink.limits.finalize_unchanged
    draft = await sink.post("Thinking about")
    await sink.edit(draft, "Thinking about it")
    assert fake_tg.bot_messages(chat) == []
    real = await sink.finalize(draft, "Thinking about it: yes.")
    [message] = fake_tg.bot_messages(chat)
    assert real == str(message.message_id) and message.text == "Thinking about it: yes."
    assert len(fake_tg.calls_of("sendMessageDraft", ok=True)) == 2


async def test_drafts_refused_fall_back_to_messages_for_every_chat(
    fake_tg: FakeTelegram, bot: Bot
) -> None:
    fake_tg.drafts_supported = False
    drafts = DraftSupport()
    chats = [fake_tg.private_chat(fake_tg.user(name)) for name in ("A", "B")]
    first = TelegramSink(bot, Target(chats[0], private=True), fake_tg.bot_id, drafts)
    key = await first.post("one")
    await first.edit(key, "one two")
    assert await first.finalize(key, "one two three") is None
    assert not drafts.enabled
    second = TelegramSink(bot, Target(chats[1], private=True), fake_tg.bot_id, drafts)
    await second.post("other")
    assert [m.text for m in fake_tg.bot_messages()] == ["one two three", "other"]
    assert len(fake_tg.calls_of("sendMessageDraft")) == 1


async def test_errors_become_sink_errors(fake_tg: FakeTelegram, bot: Bot) -> None:
    fake_tg.group_per_minute = 1
    group = fake_tg.group(-1002, "Tiny budget")
    sink = TelegramSink(bot, Target(group, private=False), fake_tg.bot_id)
    message = await sink.post("first")
    with pytest.raises(SinkRateLimited) as limited:
        await sink.edit(message, "second")
    assert limited.value.retry_after >= 1
    assert fake_tg.rate_limited == 1

    chat = fake_tg.private_chat(fake_tg.user("Blocker"))
    fake_tg.block(chat)
    with pytest.raises(SinkGone):
        await TelegramSink(bot, Target(chat, private=True), fake_tg.bot_id).post("hello")

    other = fake_tg.private_chat(fake_tg.user("Deleter"))
    drafts = DraftSupport(enabled=False)
    sink = TelegramSink(bot, Target(other, private=True), fake_tg.bot_id, drafts)
    posted = await sink.post("to be deleted")
    fake_tg.delete(other, int(posted))
    with pytest.raises(SinkGone):
        await sink.edit(posted, "edited")
