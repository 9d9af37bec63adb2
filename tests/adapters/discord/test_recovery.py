"""End to end: an answer cut by SIGKILL is finished by the next start and its thread goes on."""

from __future__ import annotations

import asyncio
from pathlib import Path

from core.recovery import INTERRUPTED_NOTE
from tests.adapters.discord.conftest import running, user_turns
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.openai_server import FakeOpenAI, Reply

FAST_RECOVERY = {"THREADLINE_SAVE_INTERVAL": "0.5", "THREADLINE_STALE_AFTER": "2"}


async def test_an_answer_cut_by_sigkill_is_finished_on_restart_and_a_reply_continues_it(
    tmp_path: Path, fake_discord: FakeDiscord, fake_llm: FakeOpenAI
) -> None:
    fake = fake_discord
    words = " ".join(f"word{i}" for i in range(80))
    fake_llm.script(Reply(text=words, delay_between=0.2), Reply())
    async with running(tmp_path, fake, fake_llm, **FAST_RECOVERY) as proc:
        question = await fake.user_message(fake.channel_id, "long one", mention_bot=True)
        await proc.wait_until(
            lambda: "word8" in fake.answer_text(question), what="the answer to be showing"
        )
        await asyncio.sleep(1.0)  # the stored copy is at most 0.5 s behind
        await proc.kill()
        cut = fake.answer_text(question)
        assert "word79" not in cut and INTERRUPTED_NOTE not in cut  # frozen mid-answer

    async with running(tmp_path, fake, fake_llm, **FAST_RECOVERY) as proc:
        await proc.wait_until(
            lambda: fake.answer_text(question).endswith(INTERRUPTED_NOTE),
            within=30,
            what="the interrupted answer to be finished",
        )
        finished = fake.answer_text(question)
        assert finished.startswith("word0 word1 word2") and "word79" not in finished
        assert len(fake.answer_parts(question)) == 1  # finished in place, not posted again
        answer_id = fake.answer_parts(question)[0].id
        follow_up = await fake.user_message(fake.channel_id, "go on", reply_to=answer_id)
        await proc.wait_until(
            lambda: fake.answer_text(follow_up) == "echo: go on", what="the reply's answer"
        )
    turns = user_turns(fake_llm.chat_requests[-1].json)
    assert turns[0] == ("user", "long one") and turns[-1] == ("user", "go on")
    role, saved = turns[1]
    assert role == "assistant" and saved.startswith("word0 word1 word2") and words.startswith(saved)
