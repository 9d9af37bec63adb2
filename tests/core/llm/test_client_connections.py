"""ChatCompletionsClient keeps its HTTP connection: bodies are read to the end before closing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from core.errors import LLMTimeout
from core.llm import ChatCompletionsClient, ContentDelta
from tests.fakes.llm_helpers import (
    ConnectionCounter,
    RecordingClock,
    ask,
    collect,
    endpoint_for,
    text_of,
)
from tests.fakes.openai_server import FakeOpenAI, Fault, Reply


@pytest.fixture
def counter() -> ConnectionCounter:
    return ConnectionCounter()


@pytest.fixture
async def http(counter: ConnectionCounter) -> AsyncIterator[httpx.AsyncClient]:
    async with counter.client() as client:
        yield client


async def stop_after_first_delta(client: ChatCompletionsClient) -> tuple[ContentDelta, float]:
    """Take the first delta, then close the stream; returns it and how long closing took."""
    stream = client.stream(ask("one two three four"))
    first = await anext(stream)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await stream.aclose()  # type: ignore[attr-defined]
    assert isinstance(first, ContentDelta)
    return first, loop.time() - start


async def test_the_counter_sees_every_new_connection(
    server: FakeOpenAI, counter: ConnectionCounter
) -> None:
    for _ in range(2):
        async with counter.client() as http:
            client = ChatCompletionsClient(http, endpoint_for(server))
            _events, error = await collect(client, ask())
            assert error is None

    assert counter.opened == 2


async def test_sequential_streams_share_one_connection(
    server: FakeOpenAI, http: httpx.AsyncClient, counter: ConnectionCounter
) -> None:
    client = ChatCompletionsClient(http, endpoint_for(server))

    for word in ["one", "two", "three"]:
        events, error = await collect(client, ask(word))
        assert error is None
        assert text_of(events) == f"echo: {word}"

    assert len(server.chat_requests) == 3
    assert counter.opened == 1


@pytest.mark.parametrize(
    "quirks",
    [
        {"crlf"},
        {"split_bytes"},
        {"no_done"},
        {"blank_lines", "multiline_data"},
        {"keepalive_comments", "groq_usage"},
        {"ignore_stream"},
    ],
    ids=lambda quirks: "+".join(sorted(quirks)),
)
async def test_the_connection_is_kept_whatever_the_framing(
    server: FakeOpenAI, http: httpx.AsyncClient, counter: ConnectionCounter, quirks: set[str]
) -> None:
    server.script(*[Reply(text="a b c", quirks=quirks)] * 2)
    client = ChatCompletionsClient(http, endpoint_for(server))

    for _ in range(2):
        events, error = await collect(client, ask())
        assert error is None
        assert text_of(events) == "a b c"

    assert counter.opened == 1


async def test_a_consumer_that_stops_early_leaves_the_connection_reusable(
    server: FakeOpenAI, http: httpx.AsyncClient, counter: ConnectionCounter
) -> None:
    client = ChatCompletionsClient(http, endpoint_for(server))

    first, closing = await stop_after_first_delta(client)
    events, error = await collect(client, ask("again"))

    assert first == ContentDelta(0, "echo:")
    assert closing < 0.25
    assert error is None
    assert text_of(events) == "echo: again"
    assert counter.opened == 1


async def test_a_consumer_that_breaks_out_of_the_loop_leaves_the_connection_reusable(
    server: FakeOpenAI, http: httpx.AsyncClient, counter: ConnectionCounter
) -> None:
    client = ChatCompletionsClient(http, endpoint_for(server))

    async for _event in client.stream(ask("one two three four")):
        break  # no aclose(): asyncio's finalizer closes the generator in a task of its own
    await asyncio.sleep(0.1)
    events, error = await collect(client, ask("again"))

    assert error is None
    assert text_of(events) == "echo: again"
    assert counter.opened == 1


async def test_stopping_early_in_a_long_stall_gives_up_the_connection_quickly(
    server: FakeOpenAI, http: httpx.AsyncClient, counter: ConnectionCounter
) -> None:
    server.script(Fault.stall(after_chunks=1, seconds=3.0))
    client = ChatCompletionsClient(http, endpoint_for(server))

    _first, closing = await stop_after_first_delta(client)
    events, error = await collect(client, ask("again"))

    assert 0.2 <= closing < 0.6  # waited a bounded while for the end of the body, then closed
    assert error is None
    assert text_of(events) == "echo: again"
    assert counter.opened == 2


async def test_stopping_early_in_a_huge_answer_does_not_read_it_all(
    server: FakeOpenAI, http: httpx.AsyncClient, counter: ConnectionCounter
) -> None:
    server.script(Reply(text=" ".join(["word"] * 5000)))  # about 1.2 MB of events
    client = ChatCompletionsClient(http, endpoint_for(server))

    _first, closing = await stop_after_first_delta(client)
    events, error = await collect(client, ask("again"))

    assert closing < 0.6
    assert error is None
    assert text_of(events) == "echo: again"
    assert counter.opened == 2


async def test_a_retry_after_an_error_chunk_reuses_the_connection(
    server: FakeOpenAI, http: httpx.AsyncClient, counter: ConnectionCounter
) -> None:
    server.script(Fault.error_chunk(after=0, message="overloaded"))
    client = ChatCompletionsClient(http, endpoint_for(server, max_retries=1), RecordingClock())

    events, error = await collect(client, ask("hi"))

    assert error is None
    assert text_of(events) == "echo: hi"
    assert len(server.chat_requests) == 2
    assert counter.opened == 1


async def test_retries_after_error_statuses_reuse_the_connection(
    server: FakeOpenAI, http: httpx.AsyncClient, counter: ConnectionCounter
) -> None:
    server.script(Fault.status(503), Fault.status(429, retry_after=1))
    client = ChatCompletionsClient(
        http, endpoint_for(server, max_retries=2, retry_max_delay=2), RecordingClock()
    )

    events, error = await collect(client, ask("hi"))
    completion = await client.complete(ask("whole", stream=False))

    assert error is None
    assert text_of(events) == "echo: hi"
    assert completion.text == "echo: whole"
    assert counter.opened == 1


async def test_a_timed_out_stream_drops_its_connection(
    server: FakeOpenAI, http: httpx.AsyncClient, counter: ConnectionCounter
) -> None:
    server.script(Fault.stall(after_chunks=1, seconds=2.0))
    client = ChatCompletionsClient(http, endpoint_for(server, chunk_timeout=0.2))

    _events, error = await collect(client, ask("one two"))
    events, second_error = await collect(client, ask("next"))

    assert isinstance(error, LLMTimeout)
    assert second_error is None
    assert text_of(events) == "echo: next"
    assert counter.opened == 2  # a body cut off mid-stream cannot be reused
