"""A conversation never gets stuck on the context window, whatever the server's wording.

Against the fake LLM enforcing a 2,048-token context (counted as characters / 4, see
`tests.fakes.openai_server.count_prompt_tokens`) while the service still assumes the default
128,000: one long message, then short ones, and a conversation that grows past the context.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.context import ContextLimits, TokenCounter
from core.store import HistoryStore
from tests.core.test_service import Rig, make_rig
from tests.fakes.openai_server import FakeOpenAI, Fault

CONTEXT = 2048
STATED = ["openai", "vllm", "llamacpp", "openrouter", "lmstudio"]  # the error gives the size
UNSTATED = ["groq", "ollama"]  # the error says "too long" and nothing more
LONG = "lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 180  # ~2,600 tokens / 4
MEDIUM = "sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. " * 20
LEFT_OUT = "so I left them out"


@pytest.fixture(params=STATED + UNSTATED)
async def server(request: pytest.FixtureRequest) -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(
        context_size=CONTEXT, context_style=request.param, publish_context=False
    ) as fake:
        yield fake


async def say(rig: Rig, text: str) -> str:
    sink = rig.sink(max_length=100_000)
    await rig.service.handle(rig.inbound(text), sink)
    [shown] = sink.texts()
    return shown


async def test_after_one_long_message_the_next_ones_are_answered(
    tmp_path: Path, server: FakeOpenAI
) -> None:
    async with make_rig(tmp_path, server, context_window=128_000, reply_tokens=4_096) as rig:
        told = await say(rig, LONG)
        assert "too long for the model's context window" in told
        assert "try again" not in told.lower()
        if server.context_style in STATED:
            assert f"context window of {CONTEXT} tokens" in told
        first = await say(rig, "what is two plus two?")
        assert first.startswith("echo: what is two plus two?")
        assert LEFT_OUT in first
        second = await say(rig, "and three plus three?")
        assert second == "echo: and three plus three?"
        learned = await rig.store.model_limit("fake-model")
        assert learned is not None and learned <= CONTEXT
        if server.context_style in STATED:
            assert learned == CONTEXT
        rejections = server.context_rejections
    # A restart on the same database keeps the limit: no request is rejected any more.
    async with make_rig(tmp_path, server, context_window=128_000, reply_tokens=4_096) as rig:
        rig.counter = 100  # new message ids after the restart
        third = await say(rig, "and four plus four?")
        assert third == "echo: and four plus four?"
        assert server.context_rejections == rejections


async def test_a_growing_conversation_is_retried_once_with_older_messages_left_out(
    tmp_path: Path, server: FakeOpenAI
) -> None:
    async with make_rig(tmp_path, server, context_window=128_000, reply_tokens=4_096) as rig:
        shown = [await say(rig, f"{n}: {MEDIUM}") for n in range(8)]
        for n, text in enumerate(shown):
            assert text.startswith(f"echo: {n}: sed do"), text[:200]
        assert server.context_rejections >= 1
        # Each rejection was followed by exactly one retry, which was answered.
        assert len(server.chat_requests) == len(shown) + server.context_rejections
        assert sum(LEFT_OUT in text for text in shown) == 1
        assert await rig.store.model_limit("fake-model") is not None


async def test_a_stated_limit_is_learned_even_when_the_server_counts_more_than_we_do(
    tmp_path: Path,
) -> None:
    # The fake counts characters / 4: long words are ~1.6 times what the service estimates.
    dense = "internationalization responsibilities " * 40
    async with (
        FakeOpenAI(context_size=CONTEXT, context_style="llamacpp") as fake,
        make_rig(tmp_path, fake, context_window=128_000, reply_tokens=4_096) as rig,
    ):
        shown = [await say(rig, f"{n}: {dense}") for n in range(10)]
        assert all(text.startswith(f"echo: {n}: international") for n, text in enumerate(shown))
        assert len(fake.chat_requests) == len(shown) + fake.context_rejections


async def test_other_rejections_say_what_happened_and_retry_only_when_it_can_help(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    async with make_rig(tmp_path, fake_llm) as rig:
        fake_llm.script(Fault.status(400, message="Invalid value for 'temperature'"))
        rejected = await say(rig, "hello")
        assert rejected == "⚠️ Sorry, the language model rejected the request (HTTP 400)."
        fake_llm.script(Fault.status(503))
        unavailable = await say(rig, "hello again")
        assert unavailable.endswith("Please try again in a moment.")


async def test_a_stored_limit_wins_over_a_larger_published_one(tmp_path: Path) -> None:
    store = await HistoryStore.open(f"sqlite:///{tmp_path / 'limits.db'}")
    try:
        await store.lower_model_limit("llama", 1024)
        limits = ContextLimits(store, context_window=2048, counter=TokenCounter())
        assert await limits.limit("llama") == 1024
        assert await limits.limit("other") == 2048
        budget = await limits.budget("llama", 4096, reply_fixed=False)
        assert (budget.context_tokens, budget.reply_tokens) == (1024, 256)
        fixed = await limits.budget("other", 1000, reply_fixed=True)
        assert (fixed.context_tokens, fixed.reply_tokens) == (2048, 1000)
    finally:
        await store.close()


async def test_a_retry_rejected_again_is_learned_from_and_not_retried_again(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    def too_long(limit: int) -> Fault:
        message = (
            f"This model's maximum context length is {limit} tokens. However, your messages "
            "resulted in 5000 tokens. Please reduce the length of the messages."
        )
        return Fault.status(400, message=message)

    async with make_rig(tmp_path, fake_llm, context_window=128_000, reply_tokens=4_096) as rig:
        for n in range(3):
            await say(rig, f"{n}: {MEDIUM}")
        fake_llm.script(too_long(4000), too_long(500))
        shown = await say(rig, "one more")
        assert len(fake_llm.chat_requests) == 5
        assert len(fake_llm.chat_requests[4].json["messages"]) < len(
            fake_llm.chat_requests[3].json["messages"]
        )
        assert shown == (
            "⚠️ Sorry, the conversation is too long for the model's context window of 500 tokens."
        )
        assert await rig.store.model_limit("fake-model") == 500
