"""End to end: a native stream cut by SIGKILL is finished by the next start, and goes on."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.adapters.slack.conftest import answered, connected, slack_env
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.service_process import ThreadlineProcess
from tests.fakes.slack_server import FakeSlack

FAST_RECOVERY = {"THREADLINE_SAVE_INTERVAL": "0.5", "THREADLINE_STALE_AFTER": "2"}
NOTE = "The answer stopped early: the assistant was restarted."


async def test_a_stream_cut_by_sigkill_is_finished_on_restart_and_the_thread_goes_on(
    tmp_path: Path, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    words = " ".join(f"word{i}" for i in range(80))
    fake_llm.script(Reply(text=words, delay_between=0.2), Reply())
    env = slack_env(slack, fake_llm, tmp_path, **FAST_RECOVERY)
    event = slack.message("D1", "tell me a long story")
    async with ThreadlineProcess(tmp_path, env) as service:
        await connected(service, slack)
        await slack.send_event(event)
        await service.wait_until(
            lambda: "word8" in "".join(slack.thread_text("D1", event["ts"])),
            what="the answer to be streaming",
        )
        await asyncio.sleep(1.0)  # the stored copy is at most 0.5 s behind
        await service.kill()
    assert not slack.thread_final("D1", event["ts"])  # left streaming

    async with ThreadlineProcess(tmp_path, env) as service:
        await service.wait_until(
            lambda: "socket mode connected" in service.output, what="the new connection"
        )
        texts = await answered(
            service, slack, "D1", event["ts"], lambda texts: NOTE in "".join(texts), within=30
        )
        [finished] = texts
        assert finished.startswith("word0 word1 word2") and "word79" not in finished
        assert finished.count("word0 ") == 1  # replaced, not appended to what was streamed
        reply = slack.message("D1", "go on", thread_ts=event["ts"])
        await slack.send_event(reply)
        await answered(
            service, slack, "D1", event["ts"], lambda texts: texts[-1:] == ["echo: go on"]
        )
    history = [(m["role"], m["content"]) for m in fake_llm.chat_requests[-1].json["messages"][1:]]
    assert history[0] == ("user", "tell me a long story") and history[-1] == ("user", "go on")
    role, saved = history[1]
    assert role == "assistant" and saved.startswith("word0 word1 word2") and words.startswith(saved)
