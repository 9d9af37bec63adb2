"""End to end: an answer cut by SIGKILL is finished by the next start, in a draft or a group."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.adapters.telegram.conftest import tg_env
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.service_process import ThreadlineProcess
from tests.fakes.telegram_server import FakeTelegram

FAST_RECOVERY = {"THREADLINE_SAVE_INTERVAL": "0.5", "THREADLINE_STALE_AFTER": "2"}
# the note as Telegram shows it: its Markdown emphasis becomes an italic entity
NOTE_SHOWN = "⚠️ The answer stopped early: the assistant was restarted."
WORDS = " ".join(f"word{i}" for i in range(80))


async def test_a_private_chat_answer_cut_in_its_draft_is_sent_on_restart_and_continued(
    tmp_path: Path, fake_llm: FakeOpenAI, fake_tg: FakeTelegram
) -> None:
    tg, llm = fake_tg, fake_llm
    alice = tg.user("Alice", "Smith", "alice")
    chat = tg.private_chat(alice)
    llm.script(Reply(text=WORDS, delay_between=0.2), Reply())
    env = tg_env(tg, llm, tmp_path, **FAST_RECOVERY)
    async with ThreadlineProcess(tmp_path, env) as proc:
        await proc.wait_until(lambda: bool(tg.commands), within=30, what="the bot to start")
        tg.send(chat, alice, "tell me a long story")
        await proc.wait_until(
            lambda: any("word8" in d.text for d in tg.drafts[chat].values()),
            what="the answer to be showing in a draft",
        )
        await asyncio.sleep(1.0)  # the stored copy is at most 0.5 s behind
        await proc.kill()
    assert tg.bot_messages(chat) == []  # only a draft so far, which Telegram soon drops

    async with ThreadlineProcess(tmp_path, env) as proc:
        await proc.wait_until(
            lambda: any(m.text.endswith(NOTE_SHOWN) for m in tg.bot_messages(chat)),
            within=30,
            what="the interrupted answer to be sent",
        )
        [finished] = tg.bot_messages(chat)
        assert finished.text.startswith("word0 word1 word2") and "word79" not in finished.text
        tg.send(chat, alice, "go on", reply_to=finished.message_id)
        await proc.wait_until(
            lambda: any(m.text == "echo: go on" for m in tg.bot_messages(chat)),
            what="the reply's answer",
        )
    history = [(m["role"], m["content"]) for m in llm.chat_requests[-1].json["messages"][1:]]
    assert history[0] == ("user", "tell me a long story") and history[-1] == ("user", "go on")
    role, saved = history[1]
    assert role == "assistant" and saved.startswith("word0 word1 word2") and WORDS.startswith(saved)
