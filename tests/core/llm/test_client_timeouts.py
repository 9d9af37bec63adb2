"""ChatCompletionsClient timeouts: first token, gap between chunks, whole answer, connect."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import httpx
import pytest

from core.errors import LLMTimeout
from core.llm import (
    ChatCompletionsClient,
    ChatRequest,
    StreamEvent,
)
from tests.fakes import llm_helpers
from tests.fakes.llm_helpers import RecordingClock, endpoint_for, text_of
from tests.fakes.openai_server import FakeOpenAI, Fault, Reply


def ask(text: str = "hello world") -> ChatRequest:
    return llm_helpers.ask(text, model="m")


async def timed_collect(
    client: ChatCompletionsClient, request: ChatRequest
) -> tuple[list[StreamEvent], Exception | None, float]:
    loop = asyncio.get_running_loop()
    start = loop.time()
    events: list[StreamEvent] = []
    try:
        async for event in client.stream(request):
            events.append(event)
    except Exception as exc:
        return events, exc, loop.time() - start
    return events, None, loop.time() - start


async def test_first_token_timeout_when_the_first_event_is_late(
    server: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    server.script(Fault.slow_first_token(2.0))
    client = ChatCompletionsClient(http, endpoint_for(server, first_token_timeout=0.2))

    events, error, elapsed = await timed_collect(client, ask())

    assert events == []
    assert isinstance(error, LLMTimeout)
    assert "first-token" in str(error)
    assert 0.15 <= elapsed < 1.0


async def test_first_token_timeout_when_the_headers_are_late(
    server: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    server.script(Fault.slow_headers(2.0))
    client = ChatCompletionsClient(http, endpoint_for(server, first_token_timeout=0.2))

    _events, error, elapsed = await timed_collect(client, ask())

    assert isinstance(error, LLMTimeout)
    assert "first-token" in str(error)
    assert elapsed < 1.0


async def test_keepalive_comments_do_not_count_as_the_first_token(
    server: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    server.script(Fault.slow_first_token(2.0, Reply(quirks={"keepalive_comments"})))
    client = ChatCompletionsClient(
        http, endpoint_for(server, first_token_timeout=0.3, chunk_timeout=0.1)
    )

    _events, error, elapsed = await timed_collect(client, ask())

    assert isinstance(error, LLMTimeout)
    assert "first-token" in str(error)
    assert 0.25 <= elapsed < 1.0


async def test_slow_first_token_within_the_limit_is_fine(
    server: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    server.script(Fault.slow_first_token(0.3))
    client = ChatCompletionsClient(
        http, endpoint_for(server, first_token_timeout=1.0, chunk_timeout=0.1)
    )

    events, error, _ = await timed_collect(client, ask("hi"))

    assert error is None
    assert text_of(events) == "echo: hi"


async def test_a_stall_mid_stream_hits_the_chunk_timeout_after_the_partial_text(
    server: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    server.script(Fault.stall(after_chunks=2, seconds=2.0))
    client = ChatCompletionsClient(
        http, endpoint_for(server, chunk_timeout=0.2, max_retries=3), RecordingClock()
    )

    events, error, elapsed = await timed_collect(client, ask("one two three"))

    assert text_of(events) == "echo: one"
    assert isinstance(error, LLMTimeout)
    assert "chunk timeout" in str(error)
    assert elapsed < 1.0
    assert len(server.chat_requests) == 1  # never retried after a delta


async def test_keepalive_comments_reset_the_chunk_timer(
    server: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    reply = Reply(quirks={"keepalive_comments"}, keepalive_interval=0.05)
    server.script(Fault.stall(after_chunks=2, seconds=0.6, reply=reply))
    client = ChatCompletionsClient(http, endpoint_for(server, chunk_timeout=0.25))

    events, error, elapsed = await timed_collect(client, ask("one two three"))

    assert error is None
    assert text_of(events) == "echo: one two three"
    assert elapsed >= 0.55


async def test_steady_slow_stream_within_the_chunk_timeout_is_fine(
    server: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    server.script(Fault.slow_stream(0.1))
    client = ChatCompletionsClient(http, endpoint_for(server, chunk_timeout=0.3))

    events, error, elapsed = await timed_collect(client, ask("a b c d"))

    assert error is None
    assert text_of(events) == "echo: a b c d"
    assert elapsed >= 0.4


async def test_total_timeout_ends_a_stream_that_keeps_going(
    server: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    server.script(Fault.slow_stream(0.1, Reply(text=" ".join(["word"] * 30))))
    client = ChatCompletionsClient(
        http, endpoint_for(server, chunk_timeout=1.0, total_timeout=0.45, max_retries=2)
    )

    events, error, elapsed = await timed_collect(client, ask())

    assert isinstance(error, LLMTimeout)
    assert "total timeout" in str(error)
    assert 2 <= len(text_of(events).split()) <= 6
    assert 0.4 <= elapsed < 1.0


async def test_total_timeout_spans_retries(server: FakeOpenAI, http: httpx.AsyncClient) -> None:
    server.script(*[Fault.slow_first_token(2.0)] * 5)
    client = ChatCompletionsClient(
        http, endpoint_for(server, first_token_timeout=0.2, total_timeout=0.5, max_retries=10)
    )

    _events, error, elapsed = await timed_collect(client, ask())

    assert isinstance(error, LLMTimeout)
    assert elapsed < 1.0
    assert len(server.chat_requests) <= 3


async def test_first_token_timeout_is_retried_before_any_text(
    server: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    clock = RecordingClock()
    server.script(Fault.slow_first_token(2.0))
    client = ChatCompletionsClient(
        http, endpoint_for(server, first_token_timeout=0.2, max_retries=1), clock
    )

    events, error, _ = await timed_collect(client, ask("retry me"))

    assert error is None
    assert text_of(events) == "echo: retry me"
    assert len(server.chat_requests) == 2
    assert len(clock.sleeps) == 1


async def test_complete_hits_the_total_timeout(server: FakeOpenAI, http: httpx.AsyncClient) -> None:
    server.script(Fault.slow_headers(2.0))
    client = ChatCompletionsClient(http, endpoint_for(server, total_timeout=0.3))
    request = dataclasses.replace(ask(), stream=False)

    start = time.monotonic()
    with pytest.raises(LLMTimeout, match="total timeout"):
        await client.complete(request)
    assert time.monotonic() - start < 1.0
