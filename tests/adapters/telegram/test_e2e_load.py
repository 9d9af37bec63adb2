"""End to end under load: concurrent answers in one group and in 50 private chats, zero 429s.

Telegram allows 20 messages a minute in one group, so every answer there costs at least one
sendMessage out of that budget: 50 answers in one group take about three minutes whatever the
bot does (`bench.telegram_load` measures the same scenario's latencies). This test runs them at
the same time as 50 private chats, all sharing the bot-wide budget, and checks that no write
got a 429 and every answer's complete text is visible.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.adapters.telegram.conftest import tg_env
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.service_process import ThreadlineProcess
from tests.fakes.telegram_server import FakeTelegram

GROUP_ANSWERS = 50
PRIVATE_CHATS = 50


async def test_concurrent_answers_in_a_group_and_in_50_private_chats_without_429(
    tmp_path: Path, fake_llm: FakeOpenAI, fake_tg: FakeTelegram
) -> None:
    tg, llm = fake_tg, fake_llm
    group = tg.group(-1001000000003, "Busy group")
    people = [tg.user(f"User{i}") for i in range(PRIVATE_CHATS)]
    chats = [tg.private_chat(person) for person in people]
    async with ThreadlineProcess(tmp_path, tg_env(tg, llm, tmp_path)) as proc:
        await proc.wait_until(lambda: bool(tg.commands), what="the bot to start")
        llm.script(*[Reply(delay_between=0.05) for _ in range(GROUP_ANSWERS + PRIVATE_CHATS)])
        started = time.monotonic()
        questions = {}
        for i in range(GROUP_ANSWERS):
            text = f"group question number {i} please"
            questions[tg.send(group, people[i], tg.mention(text))] = f"echo: {text}"
        for chat, person in zip(chats, people, strict=True):
            tg.send(chat, person, f"private question from {person['first_name']}")

        def group_done() -> bool:
            return all(
                any(m.text == answer for m in tg.replies_to(group, question))
                for question, answer in questions.items()
            )

        def private_done() -> bool:
            return all(
                any(
                    m.text == f"echo: private question from {person['first_name']}"
                    for m in tg.bot_messages(chat)
                )
                for chat, person in zip(chats, people, strict=True)
            )

        await proc.wait_until(private_done, within=40, what="50 private answers")
        private_seconds = time.monotonic() - started
        await proc.wait_until(group_done, within=300, what="the group answers")
        group_seconds = time.monotonic() - started
        print(
            f"\n50 private chats: {private_seconds:.1f}s; {GROUP_ANSWERS} group answers: "
            f"{group_seconds:.1f}s; calls {len(tg.calls)}; 429s {tg.rate_limited}"
        )
        assert tg.rate_limited == 0
        assert [c for c in tg.calls if c.status != 200] == []
        # each private answer: its draft(s) and one sendMessage committing the complete text
        for chat in chats:
            sends = [c for c in tg.calls_of("sendMessage") if c.payload["chat_id"] == chat]
            assert len(sends) == 1
        # each group answer replies to its question, once
        assert all(len(tg.replies_to(group, q)) == 1 for q in questions)
        assert len(llm.chat_requests) == GROUP_ANSWERS + PRIVATE_CHATS
    assert tg.token not in proc.output
