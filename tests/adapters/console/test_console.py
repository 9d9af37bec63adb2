"""Console channel: the sink prints only settled text, and a whole exchange through the service."""

from __future__ import annotations

import asyncio
import io
import signal
import sys
from pathlib import Path

import httpx

from adapters.console import ConsoleChannel, ConsoleSink
from core.clock import SystemClock
from core.context import TokenCounter
from core.llm import ChatCompletionsClient, ChatParams, LLMEndpoint
from core.service import ChatService, ServiceConfig
from core.store import HistoryStore
from core.streaming import Pacer, StreamDriver
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.service_process import service_env


async def test_sink_holds_back_display_only_closers_and_prints_the_final_text() -> None:
    out = io.StringIO()
    sink = ConsoleSink(out, interactive=False)
    message = await sink.post("Here:\n```py\nx = 1\n```")
    assert out.getvalue() == ""
    await sink.edit(message, "Here:\n```py\nx = 1\ny = 2\n```")
    # The fence closed only for display is not printed; what both texts share is.
    assert out.getvalue() == "Here:\n```py\nx = 1\n"
    await sink.finalize(message, "Here:\n```py\nx = 1\ny = 2\n```\nDone.")
    assert out.getvalue() == "Here:\n```py\nx = 1\ny = 2\n```\nDone.\n"


async def test_sink_shows_and_clears_a_typing_line_on_a_terminal() -> None:
    out = io.StringIO()
    sink = ConsoleSink(out, interactive=True)
    await sink.show_typing()
    assert "thinking" in out.getvalue()
    message = await sink.post("hi")
    await sink.finalize(message, "hi there")
    assert out.getvalue().endswith("\r\x1b[Khi there\n")


async def test_ask_through_the_console_channel_streams_and_remembers(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    store = await HistoryStore.open(f"sqlite:///{tmp_path / 'console.db'}")
    async with httpx.AsyncClient() as http:
        service = ChatService(
            store=store,
            llm=ChatCompletionsClient(http, LLMEndpoint(base_url=fake_llm.base_url)),
            driver=StreamDriver(Pacer(SystemClock())),
            counter=TokenCounter(),
            config=ServiceConfig(
                system_prompt="sys",
                params=ChatParams(model="fake-model"),
                context_window=8000,
                reply_tokens=500,
            ),
        )
        out = io.StringIO()
        channel = ConsoleChannel(service, thread="demo", out=out, user="ada")
        fake_llm.script(Reply(text="A growing answer, word by word.", delay_between=0.02))
        await channel.ask("first")
        await channel.ask("second")
    await store.close()
    assert out.getvalue() == "A growing answer, word by word.\necho: second\n"
    contents = [m["content"] for m in fake_llm.chat_requests[1].json["messages"]]
    assert contents == ["sys", "first", "A growing answer, word by word.", "second"]


async def test_several_answers_are_printed_one_after_the_other() -> None:
    out = io.StringIO()
    sink = ConsoleSink(out, interactive=False)
    first = await sink.post("alpha")
    second = await sink.post("one")
    await sink.edit(second, "one two")
    await sink.edit(first, "alpha beta")
    await sink.finalize(second, "one two three")
    await sink.edit(first, "alpha beta gamma")
    await sink.finalize(first, "alpha beta gamma delta")
    assert out.getvalue() == "alpha beta gamma delta\none two three\n"


async def test_ctrl_c_during_an_answer_stops_it_and_the_chat_goes_on(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    words = " ".join(f"word{i}" for i in range(300))
    fake_llm.script(Reply(text=words, delay_between=0.03), Reply())
    env = service_env(
        {
            "OPENAI_BASE_URL": fake_llm.base_url,
            "THREADLINE_MODEL": "fake-model",
            "THREADLINE_MAX_RETRIES": "0",
            "THREADLINE_CONTEXT_WINDOW": "8000",
            "THREADLINE_USER_HASH_KEY": "console-test-hash-key",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'chat.db'}",
        }
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bots",
        "chat",
        cwd=tmp_path,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(b"tell me everything\n")
    await process.stdin.drain()
    seen = b""
    while b"word20" not in seen:
        seen += await asyncio.wait_for(process.stdout.read(200), 20)
    process.send_signal(signal.SIGINT)  # Ctrl-C while the answer streams
    await asyncio.sleep(0.5)
    process.stdin.write(b"and now?\n")
    await process.stdin.drain()
    process.stdin.close()
    rest, _ = await asyncio.wait_for(process.communicate(), 30)
    output = (seen + rest).decode()
    assert process.returncode == 0, output
    assert "⏹️ _Stopped._" in output and "word299" not in output
    assert "echo: and now?" in output  # back at the prompt, the chat went on
    assert fake_llm.chat_requests[0].disconnected
