"""ChatCompletionsClient timeouts: first token, gap between chunks, whole answer, connect."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from core.errors import LLMTimeout
from core.llm import (
    ChatCompletionsClient,
    ChatRequest,
    LLMEndpoint,
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


async def test_the_body_reads_share_one_timer(
    server: FakeOpenAI, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.script(Reply(text=" ".join(["word"] * 300)))
    client = ChatCompletionsClient(http, endpoint_for(server))
    loop = asyncio.get_running_loop()
    timers = 0
    call_at = loop.call_at

    def counting_call_at(*args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        nonlocal timers
        timers += 1
        return call_at(*args, **kwargs)

    monkeypatch.setattr(loop, "call_at", counting_call_at)
    events, error, _ = await timed_collect(client, ask())
    monkeypatch.undo()

    assert error is None
    assert len(text_of(events).split()) == 300
    assert timers < 20  # not one (or more) per chunk


async def test_cancelling_the_consumer_mid_read_is_a_cancellation_not_a_timeout(
    server: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    server.script(Fault.stall(after_chunks=1, seconds=2.0))
    client = ChatCompletionsClient(http, endpoint_for(server, chunk_timeout=0.3))
    events: list[StreamEvent] = []

    async def consume() -> None:
        async for event in client.stream(ask("one two")):
            events.append(event)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.15)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.3)  # past the chunk deadline: nothing may fire into another task

    assert text_of(events) == "echo:"
    assert task.cancelled()
    more, error, _ = await timed_collect(client, ask("next"))
    assert error is None
    assert text_of(more) == "echo: next"


def sse_events(*texts: str) -> list[bytes]:
    """An answer streaming `texts` as the deltas of choice 0, then stop and [DONE]."""
    chunks: list[dict[str, Any]] = [
        {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
        for text in texts
    ]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return [f"data: {json.dumps(chunk)}\n\n".encode() for chunk in chunks] + [b"data: [DONE]\n\n"]


def gzip_pieces(events: list[bytes]) -> list[bytes]:
    """Each event compressed and flushed on its own, as a server compressing SSE does."""
    compressor = zlib.compressobj(wbits=31)
    pieces = [compressor.compress(event) + compressor.flush(zlib.Z_SYNC_FLUSH) for event in events]
    return [*pieces, compressor.flush()]


def mock_http(pieces: list[bytes], pause_after: int = -1, pause: float = 0.0) -> httpx.AsyncClient:
    """A client whose server answers with `pieces` of a gzip-encoded SSE body."""

    async def body() -> AsyncIterator[bytes]:
        for number, piece in enumerate(pieces):
            if number == pause_after:
                await asyncio.sleep(pause)
            yield piece

    async def handler(request: httpx.Request) -> httpx.Response:
        headers = {"content-type": "text/event-stream", "content-encoding": "gzip"}
        return httpx.Response(200, headers=headers, content=body())

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_chunk_timeout_applies_to_a_compressed_stream() -> None:
    pieces = gzip_pieces(sse_events("one", " two"))
    endpoint = LLMEndpoint("http://llm.test/v1", max_retries=0, chunk_timeout=0.2)
    async with mock_http(pieces, pause_after=2, pause=2.0) as http:
        client = ChatCompletionsClient(http, endpoint)

        events, error, elapsed = await timed_collect(client, ask())

    assert text_of(events) == "one two"
    assert isinstance(error, LLMTimeout)
    assert "chunk timeout" in str(error)
    assert elapsed < 1.0


async def test_a_compressed_stream_is_decoded_within_the_deadlines() -> None:
    pieces = gzip_pieces(sse_events("héllo", " wörld 😀"))
    endpoint = LLMEndpoint("http://llm.test/v1", max_retries=0, chunk_timeout=0.5)
    async with mock_http(pieces, pause_after=1, pause=0.1) as http:
        client = ChatCompletionsClient(http, endpoint)

        events, error, _ = await timed_collect(client, ask())

    assert error is None
    assert text_of(events) == "héllo wörld 😀"
