"""SIGTERM stops intake, lets answers finish within THREADLINE_SHUTDOWN_GRACE, stores them."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from tests.adapters.telegram.conftest import tg_env
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.service_process import ThreadlineProcess
from tests.fakes.telegram_server import FakeTelegram

ANSWERS = 20


def _stored(database: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            "SELECT status, content FROM messages WHERE role = 'assistant'"
        ).fetchall()
    return [(str(status), str(content)) for status, content in rows]


async def test_sigterm_during_20_answers_lets_them_finish_and_stores_them_complete(
    tmp_path: Path, fake_llm: FakeOpenAI, fake_tg: FakeTelegram
) -> None:
    tg, llm = fake_tg, fake_llm
    users = [tg.user(f"User{n}") for n in range(ANSWERS)]
    chats = [tg.private_chat(user) for user in users]
    words = [" ".join(f"a{n}w{i}" for i in range(30)) for n in range(ANSWERS)]
    llm.script(*[Reply(text=text, delay_between=0.1) for text in words])
    env = tg_env(tg, llm, tmp_path, THREADLINE_SHUTDOWN_GRACE="20")
    process = ThreadlineProcess(tmp_path, env)
    await process.start()
    try:
        await process.wait_until(lambda: bool(tg.commands), within=30, what="the bot to start")
        for user, chat in zip(users, chats, strict=True):
            tg.send(chat, user, "go")
        await process.wait_until(
            lambda: len(llm.chat_requests) == ANSWERS and all(tg.drafts[c] for c in chats),
            within=30,
            what="every answer streaming",
        )
        started = time.monotonic()
        code = await process.stop(grace=40)
        took = time.monotonic() - started
    finally:
        await process.stop()
    assert code == 0, process.output[-3000:]
    finals = {m.chat_id: m.text for m in tg.bot_messages()}
    texts = sorted(finals.values())
    assert sorted(texts) == sorted(words), "an answer was cut at shutdown"
    assert took < 20
    stored = _stored(tmp_path / "t.db")
    assert sorted(content for _, content in stored) == sorted(words)
    assert {status for status, _ in stored} == {"complete"}
    assert "letting" in process.output  # the drain said what it waited for
