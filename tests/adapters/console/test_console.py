"""Console channel: the sink prints only settled text, and a whole exchange through the service."""

from __future__ import annotations

import io
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
