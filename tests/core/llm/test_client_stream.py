"""ChatCompletionsClient.stream against FakeOpenAI: real servers' framing quirks, event order."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import httpx
import pytest

from core.errors import LLMRateLimited, LLMStreamError
from core.llm import (
    ChatCompletionsClient,
    ChatRequest,
    ChoiceFinished,
    ContentDelta,
    StreamEvent,
    UsageReport,
)
from tests.fakes import llm_helpers
from tests.fakes.llm_helpers import collect, endpoint_for, texts_of
from tests.fakes.openai_server import QUIRKS, REASONING, FakeOpenAI, Fault, Reply

UNICODE_TEXT = "héllo wörld 😀 — ünïcode «ok» 日本語"


def ask(text: str = "hello world", **params: Any) -> ChatRequest:
    return llm_helpers.ask(text, system="be brief", **params)


def finishes_of(events: list[StreamEvent]) -> list[ChoiceFinished]:
    return [event for event in events if isinstance(event, ChoiceFinished)]


def usages_of(events: list[StreamEvent]) -> list[UsageReport]:
    return [event for event in events if isinstance(event, UsageReport)]


async def test_default_answer_is_streamed_word_by_word_with_usage(
    server: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    client = ChatCompletionsClient(http, endpoint_for(server))

    events, error = await collect(client, ask("hello world"))

    assert error is None
    deltas = [event for event in events if isinstance(event, ContentDelta)]
    assert [delta.text for delta in deltas] == ["echo:", " hello", " world"]
    assert finishes_of(events) == [ChoiceFinished(0, "stop")]
    (usage,) = usages_of(events)
    assert usage.completion_tokens == 3
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert events[-1] == usage  # usage comes last
    body = server.chat_requests[0].json
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello world"},
    ]


STREAM_QUIRKS = sorted(QUIRKS - {"no_role_chunk", "ignore_stream", "no_usage", "no_done"})


@pytest.mark.parametrize("quirk", STREAM_QUIRKS)
async def test_each_server_quirk_yields_the_exact_visible_text(
    server: FakeOpenAI, http: httpx.AsyncClient, quirk: str
) -> None:
    server.script(Reply(text=UNICODE_TEXT, quirks={quirk}, keepalive_interval=0.01))
    client = ChatCompletionsClient(http, endpoint_for(server))

    events, error = await collect(client, ask())

    assert error is None
    assert texts_of(events) == {0: UNICODE_TEXT}
    assert finishes_of(events) == [ChoiceFinished(0, "stop")]
    assert len(usages_of(events)) == 1


async def test_all_quirks_at_once(server: FakeOpenAI, http: httpx.AsyncClient) -> None:
    quirks = set(STREAM_QUIRKS) | {"no_done", "no_role_chunk"}
    server.script(
        Reply(text=UNICODE_TEXT, quirks=quirks, delay_between=0.01, keepalive_interval=0.002)
    )
    client = ChatCompletionsClient(http, endpoint_for(server))

    events, error = await collect(client, ask())

    assert error is None
    assert texts_of(events) == {0: UNICODE_TEXT}
    assert finishes_of(events) == [ChoiceFinished(0, "stop")]
    assert len(usages_of(events)) == 1


async def test_split_bytes_reassembles_characters_cut_in_half(
    server: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    chunks = ["😀", "é", "日本", "語!"]
    server.script(Reply(chunks=chunks, quirks={"split_bytes"}))
    client = ChatCompletionsClient(http, endpoint_for(server))

    events, error = await collect(client, ask())

    assert error is None
    assert [e.text for e in events if isinstance(e, ContentDelta)] == chunks


async def test_reasoning_content_is_never_shown(
    server: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    server.script(Reply(text="The answer is 4.", quirks={"reasoning"}))
    client = ChatCompletionsClient(http, endpoint_for(server))

    events, error = await collect(client, ask())

    assert error is None
    assert texts_of(events) == {0: "The answer is 4."}
    assert "step by step" not in "".join(texts_of(events).values())


async def test_think_block_split_across_chunks_is_stripped(
    server: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    server.script(Reply(text="Visible answer.", quirks={"think_tags"}))
    client = ChatCompletionsClient(http, endpoint_for(server))

    events, error = await collect(client, ask())

    assert error is None
    assert texts_of(events) == {0: "Visible answer."}
    assert REASONING[:10] not in str(events)


async def test_text_that_only_looks_like_a_think_tag_is_kept(
    server: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    server.script(Reply(chunks=["<th", "ing> is", " html"]))
    client = ChatCompletionsClient(http, endpoint_for(server))

    events, error = await collect(client, ask())

    assert error is None
    assert texts_of(events) == {0: "<thing> is html"}


async def test_refusal_is_shown_as_content(server: FakeOpenAI, http: httpx.AsyncClient) -> None:
    server.script(Reply(text="", refusal="I can't help with that."))
    client = ChatCompletionsClient(http, endpoint_for(server))

    events, error = await collect(client, ask())

    assert error is None
    assert texts_of(events) == {0: "I can't help with that."}


async def test_all_choices_are_streamed_when_n_is_above_one(
    server: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    server.script(Reply(texts=["first answer", "second one here", "third"]))
    client = ChatCompletionsClient(http, endpoint_for(server))

    events, error = await collect(client, ask(n=3))

    assert error is None
    assert texts_of(events) == {0: "first answer", 1: "second one here", 2: "third"}
    assert sorted(finishes_of(events), key=lambda f: f.choice) == [
        ChoiceFinished(0, "stop"),
        ChoiceFinished(1, "stop"),
        ChoiceFinished(2, "stop"),
    ]
    assert server.chat_requests[0].json["n"] == 3


@pytest.mark.parametrize("reason", ["length", "content_filter"])
async def test_finish_reason_is_reported(
    server: FakeOpenAI, http: httpx.AsyncClient, reason: str
) -> None:
    server.script(Reply(text="cut here", finish_reason=reason))
    client = ChatCompletionsClient(http, endpoint_for(server))

    events, error = await collect(client, ask())

    assert error is None
    assert finishes_of(events) == [ChoiceFinished(0, reason)]


async def test_groq_usage_alone_is_reported(server: FakeOpenAI, http: httpx.AsyncClient) -> None:
    server.script(Reply(text="a b c", quirks={"groq_usage"}))
    client = ChatCompletionsClient(http, endpoint_for(server, include_usage=False))

    events, error = await collect(client, ask())

    assert error is None
    assert "stream_options" not in server.chat_requests[0].json
    assert [u.completion_tokens for u in usages_of(events)] == [3]


async def test_no_usage_event_when_the_server_sends_none(
    server: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    server.script(Reply(text="a b", quirks={"no_usage"}))
    client = ChatCompletionsClient(http, endpoint_for(server))

    events, error = await collect(client, ask())

    assert error is None
    assert usages_of(events) == []
    assert texts_of(events) == {0: "a b"}


async def test_server_that_ignores_stream_true_is_replayed_as_events(
    server: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    server.script(Reply(text="whole answer", quirks={"ignore_stream"}))
    client = ChatCompletionsClient(http, endpoint_for(server))

    events, error = await collect(client, ask())

    assert error is None
    assert events[0] == ContentDelta(0, "whole answer")
    assert events[1] == ChoiceFinished(0, "stop")
    assert isinstance(events[2], UsageReport)


async def test_stream_without_finish_reason_yields_everything_then_fails(
    server: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    server.script(Fault.no_finish_reason(Reply(text="partial answer")))
    client = ChatCompletionsClient(http, endpoint_for(server))

    events, error = await collect(client, ask())

    assert texts_of(events) == {0: "partial answer"}
    assert isinstance(error, LLMStreamError)
    assert "truncated" in str(error)


async def test_eof_without_finish_reason_or_done_is_truncation(
    server: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    server.script(Fault.no_finish_reason(Reply(text="partial", quirks={"no_done"})))
    client = ChatCompletionsClient(http, endpoint_for(server))

    events, error = await collect(client, ask())

    assert texts_of(events) == {0: "partial"}
    assert isinstance(error, LLMStreamError)
    assert "truncated" in str(error)


async def test_one_unfinished_choice_of_several_is_truncation(
    server: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    server.script(Fault.no_finish_reason(Reply(texts=["one", "two"])))
    client = ChatCompletionsClient(http, endpoint_for(server))

    events, error = await collect(client, ask(n=2))

    assert texts_of(events) == {0: "one", 1: "two"}
    assert isinstance(error, LLMStreamError)
    assert "0, 1" in str(error)


async def test_connection_dropped_mid_stream_keeps_the_partial_deltas(
    server: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    server.script(
        Fault.drop_mid_stream(after_chunks=3, reply=Reply(text="one two three four five"))
    )
    client = ChatCompletionsClient(http, endpoint_for(server))

    events, error = await collect(client, ask())

    assert texts_of(events) == {0: "one two three"}
    assert isinstance(error, LLMStreamError)
    assert finishes_of(events) == []


@pytest.mark.parametrize("style", ["openai", "vllm"])
async def test_error_payload_mid_stream_raises_after_the_deltas(
    server: FakeOpenAI, http: httpx.AsyncClient, style: str
) -> None:
    server.script(
        Fault.error_chunk(
            after=2, style=style, message="engine overloaded", reply=Reply(text="a b c d")
        )
    )
    client = ChatCompletionsClient(http, endpoint_for(server))

    events, error = await collect(client, ask())

    assert texts_of(events) == {0: "a b"}
    assert type(error) is LLMStreamError
    assert "engine overloaded" in str(error)


@pytest.mark.parametrize(
    ("style", "code", "message"),
    [
        ("openai", 429, "slow down"),
        ("openai", "rate_limit_exceeded", "slow down"),
        ("vllm", None, "Rate limit exceeded for this model"),
    ],
)
async def test_rate_limit_error_payload_mid_stream(
    server: FakeOpenAI, http: httpx.AsyncClient, style: str, code: str | int | None, message: str
) -> None:
    server.script(
        Fault.error_chunk(after=1, style=style, message=message, code=code, reply=Reply(text="a b"))
    )
    client = ChatCompletionsClient(http, endpoint_for(server))

    events, error = await collect(client, ask())

    assert texts_of(events) == {0: "a"}
    assert isinstance(error, LLMRateLimited)


async def test_deltas_arrive_while_the_server_is_still_streaming(
    server: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    server.script(Reply(text="one two three four five", delay_between=0.1))
    client = ChatCompletionsClient(http, endpoint_for(server))
    loop = asyncio.get_running_loop()
    start = loop.time()
    arrivals: list[float] = []

    async for event in client.stream(ask()):
        if isinstance(event, ContentDelta):
            arrivals.append(loop.time() - start)

    assert len(arrivals) == 5
    assert arrivals[0] < 0.2
    assert arrivals[-1] >= 0.35


async def test_consumer_can_stop_early_and_reuse_the_client(
    server: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    server.script(Reply(text="one two three four five six", delay_between=0.05))
    client = ChatCompletionsClient(http, endpoint_for(server))

    stream = client.stream(ask())
    first = await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]

    assert first == ContentDelta(0, "one")
    events, error = await collect(client, ask("again"))
    assert error is None
    assert texts_of(events) == {0: "echo: again"}


async def test_stream_rejects_a_non_streaming_request(
    server: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    client = ChatCompletionsClient(http, endpoint_for(server))
    request = dataclasses.replace(ask(), stream=False)

    with pytest.raises(ValueError, match="complete"):
        async for _ in client.stream(request):
            pass
