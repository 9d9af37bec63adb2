"""A sendMessage applied by Telegram whose response is lost: sent again once, never more."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from telegram import Bot
from telegram.request import HTTPXRequest

from adapters.telegram.resend import ResendGuard
from adapters.telegram.sink import SendUnconfirmed, Target, TelegramSink
from core.errors import SinkRateLimited, SinkRejected
from tests.adapters.telegram.conftest import tg_env
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.service_process import ThreadlineProcess
from tests.fakes.telegram_server import FakeTelegram

WORDS = " ".join(f"word{i}" for i in range(40))


@pytest.fixture
async def bot(fake_tg: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(
        fake_tg.token, base_url=fake_tg.api_url, request=HTTPXRequest(connection_pool_size=8)
    ) as bot:
        yield bot


async def test_a_lost_response_is_sent_again_once_and_the_answer_completes(
    tmp_path: Path, fake_llm: FakeOpenAI, fake_tg: FakeTelegram
) -> None:
    tg, llm = fake_tg, fake_llm
    group = tg.group(-100777, "Team")
    bob = tg.user("Bob")
    llm.script(Reply(text=WORDS, delay_between=0.05))
    async with ThreadlineProcess(tmp_path, tg_env(tg, llm, tmp_path)) as proc:
        await proc.wait_until(lambda: bool(tg.commands), within=30, what="the bot to start")
        tg.drop_responses(1)
        tg.send(group, bob, tg.mention("tell me"))
        await proc.wait_until(
            lambda: any(m.text == WORDS for m in tg.bot_messages(group)),
            within=60,
            what="the complete answer",
        )
    sends = tg.calls_of("sendMessage")
    assert len(sends) == 2 and sends[0] is tg.dropped[0]
    # the first copy was shown and froze; the second carries the whole answer
    first, second = tg.bot_messages(group)
    assert WORDS.startswith(first.text) and second.text == WORDS


async def test_a_second_lost_response_ends_the_answer_instead_of_sending_a_third_copy(
    tmp_path: Path, fake_llm: FakeOpenAI, fake_tg: FakeTelegram
) -> None:
    tg, llm = fake_tg, fake_llm
    group = tg.group(-100778, "Team")
    bob = tg.user("Bob")
    llm.script(Reply(text=WORDS, delay_between=0.05), Reply())
    async with ThreadlineProcess(tmp_path, tg_env(tg, llm, tmp_path)) as proc:
        await proc.wait_until(lambda: bool(tg.commands), within=30, what="the bot to start")
        tg.drop_responses(2)
        tg.send(group, bob, tg.mention("tell me"))
        await proc.wait_until(lambda: len(tg.dropped) == 2, within=30, what="two lost sends")
        # the service keeps running and answers the next message
        tg.send(group, bob, tg.mention("still there?"))
        await proc.wait_until(
            lambda: any(m.text == "echo: still there?" for m in tg.bot_messages(group)),
            within=60,
            what="the next answer",
        )
    copies = [m for m in tg.bot_messages(group) if m.text.startswith("word0")]
    assert len(copies) == 2  # the first send and its single re-send; no third copy
    assert all(WORDS.startswith(m.text) for m in copies)


async def test_the_re_send_budget_of_a_chat_is_bounded(
    fake_tg: FakeTelegram, bot: Bot
) -> None:
    group = fake_tg.group(-100779, "G")
    guard = ResendGuard(per_chat=1)
    fake_tg.drop_responses(1)
    first = TelegramSink(bot, Target(group, private=False), fake_tg.bot_id, resends=guard)
    with pytest.raises(SendUnconfirmed):
        await first.post("one")
    assert await first.post("one")  # sent again, answered this time
    fake_tg.drop_responses(1)
    second = TelegramSink(bot, Target(group, private=False), fake_tg.bot_id, resends=guard)
    with pytest.raises(SendUnconfirmed):
        await second.post("two")
    with pytest.raises(SinkRejected, match="not sending it again"):
        await second.post("two")  # the chat's one re-send in the window is used up
    assert (guard.resent, guard.refused) == (1, 1)


async def test_a_request_that_never_connected_is_not_counted_as_maybe_shown() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends: nothing listens
    base = f"http://127.0.0.1:{port}/bot"
    bot = Bot("123:abc", base_url=base, request=HTTPXRequest(connect_timeout=2))
    sink = TelegramSink(bot, Target(1, private=False), 123, resends=ResendGuard(per_chat=0))
    for _ in range(3):  # no budget at all, yet nothing is refused: nothing reached Telegram
        with pytest.raises(SinkRateLimited) as raised:
            await sink.post("hello")
        assert not isinstance(raised.value, SendUnconfirmed)
