"""ChatCompletionsClient failures: HTTP status mapping, retries, adaptive fallbacks, key secrecy."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from core.errors import (
    ConfigError,
    LLMError,
    LLMRateLimited,
    LLMRejected,
    LLMStreamError,
    LLMTimeout,
    LLMUnavailable,
)
from core.llm import (
    ChatCompletionsClient,
    ContentDelta,
    LLMEndpoint,
)
from tests.fakes import llm_helpers
from tests.fakes.llm_helpers import RecordingClock, ask, collect, text_of
from tests.fakes.openai_server import FakeOpenAI, Fault, Reply

API_KEY = "sk-test-SECRET-0123456789abcdef"


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(require_key=API_KEY) as fake:
        yield fake


@pytest.fixture
def clock() -> RecordingClock:
    return RecordingClock()


def endpoint_for(server: FakeOpenAI, **overrides: Any) -> LLMEndpoint:
    """The shared test endpoint with this file's API key and longer retry delays."""
    defaults: dict[str, Any] = {"api_key": API_KEY, "retry_base_delay": 0.1, "retry_max_delay": 5}
    return llm_helpers.endpoint_for(server, **{**defaults, **overrides})


# -- status mapping ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, LLMRejected),
        (401, LLMRejected),
        (403, LLMRejected),
        (404, LLMRejected),
        (408, LLMTimeout),
        (422, LLMRejected),
        (429, LLMRateLimited),
        (500, LLMUnavailable),
        (502, LLMUnavailable),
        (503, LLMUnavailable),
        (504, LLMTimeout),
    ],
)
async def test_status_before_streaming_maps_to_core_errors(
    server: FakeOpenAI, http: httpx.AsyncClient, status: int, error_type: type[LLMError]
) -> None:
    server.script(Fault.status(status, message=f"custom failure {status}"))
    client = ChatCompletionsClient(http, endpoint_for(server))

    events, error = await collect(client, ask())

    assert events == []
    assert type(error) is error_type
    assert f"custom failure {status}" in str(error)
    if isinstance(error, LLMRejected):
        assert error.status == status
        assert error.message == f"custom failure {status}"


@pytest.mark.parametrize("style", ["openai", "vllm", "text"])
async def test_rejection_message_comes_from_the_body(
    server: FakeOpenAI, http: httpx.AsyncClient, style: str
) -> None:
    server.script(Fault.status(400, message="model 'nope' does not exist", style=style))
    client = ChatCompletionsClient(http, endpoint_for(server))

    with pytest.raises(LLMRejected) as caught:
        async for _ in client.stream(ask()):
            pass

    assert caught.value.status == 400
    assert caught.value.message == "model 'nope' does not exist"


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault.status(429, retry_after=7), 7.0),
        (Fault.status(429, retry_after="1.5"), 1.5),
        (Fault.status(429, retry_after=7, retry_after_ms=250), 0.25),
        (Fault.status(429), None),
    ],
)
async def test_rate_limit_carries_retry_after(
    server: FakeOpenAI, http: httpx.AsyncClient, fault: Fault, expected: float | None
) -> None:
    server.script(fault)
    client = ChatCompletionsClient(http, endpoint_for(server))

    _events, error = await collect(client, ask())

    assert isinstance(error, LLMRateLimited)
    assert error.retry_after == expected


async def test_rate_limit_retry_after_as_http_date(
    server: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    server.script(Fault.status(429, retry_after=when))
    client = ChatCompletionsClient(http, endpoint_for(server))

    _events, error = await collect(client, ask())

    assert isinstance(error, LLMRateLimited)
    assert error.retry_after is not None
    assert 28 <= error.retry_after <= 30


async def test_unreachable_server_is_unavailable(http: httpx.AsyncClient) -> None:
    async with FakeOpenAI() as fake:
        endpoint = endpoint_for(fake)
    client = ChatCompletionsClient(http, endpoint)  # the fake is stopped: connection refused

    events, error = await collect(client, ask())

    assert events == []
    assert isinstance(error, LLMUnavailable)


async def test_wrong_key_is_rejected_with_401(server: FakeOpenAI, http: httpx.AsyncClient) -> None:
    client = ChatCompletionsClient(http, endpoint_for(server, api_key="sk-wrong-key-000000"))

    with pytest.raises(LLMRejected) as caught:
        async for _ in client.stream(ask()):
            pass

    assert caught.value.status == 401
    assert "Incorrect API key" in caught.value.message


def test_api_key_auth_style_needs_a_key() -> None:
    endpoint = LLMEndpoint(base_url="http://127.0.0.1:1/v1", auth_style="api-key")

    with pytest.raises(ConfigError) as caught:
        ChatCompletionsClient(httpx.AsyncClient(), endpoint)

    assert caught.value.setting == "api_key"


# -- retries ------------------------------------------------------------------------------


async def test_retries_honour_retry_after_then_succeed(
    server: FakeOpenAI, http: httpx.AsyncClient, clock: RecordingClock
) -> None:
    server.script(Fault.status(429, retry_after=1), Fault.status(503, retry_after_ms=300))
    client = ChatCompletionsClient(http, endpoint_for(server, max_retries=3), clock)

    events, error = await collect(client, ask("hi"))

    assert error is None
    assert text_of(events) == "echo: hi"
    assert len(server.chat_requests) == 3
    assert clock.sleeps == [1.0, 0.3]


async def test_retry_after_longer_than_the_maximum_delay_fails_at_once(
    server: FakeOpenAI, http: httpx.AsyncClient, clock: RecordingClock
) -> None:
    server.script(Fault.status(429, retry_after=120))
    client = ChatCompletionsClient(
        http, endpoint_for(server, max_retries=3, retry_max_delay=2.5), clock
    )

    _events, error = await collect(client, ask())

    assert isinstance(error, LLMRateLimited) and error.retry_after == 120
    assert clock.sleeps == []
    assert len(server.chat_requests) == 1


async def test_backoff_grows_exponentially_with_jitter(
    server: FakeOpenAI, http: httpx.AsyncClient, clock: RecordingClock
) -> None:
    server.script(Fault.status(500), Fault.status(502), Fault.status(500))
    endpoint = endpoint_for(server, max_retries=3, retry_base_delay=0.1, retry_max_delay=0.3)
    client = ChatCompletionsClient(http, endpoint, clock, rng=random.Random(4))

    _events, error = await collect(client, ask())

    assert error is None
    assert len(server.chat_requests) == 4
    first, second, third = clock.sleeps
    assert 0.05 <= first <= 0.1
    assert 0.1 <= second <= 0.2
    assert 0.15 <= third <= 0.3  # 0.4 capped at 0.3, then jittered
    assert len(set(clock.sleeps)) == 3


async def test_gives_up_after_max_retries(
    server: FakeOpenAI, http: httpx.AsyncClient, clock: RecordingClock
) -> None:
    server.script(*[Fault.status(503)] * 5)
    client = ChatCompletionsClient(http, endpoint_for(server, max_retries=2), clock)

    _events, error = await collect(client, ask())

    assert isinstance(error, LLMUnavailable)
    assert len(server.chat_requests) == 3
    assert len(clock.sleeps) == 2


async def test_rejections_are_not_retried(
    server: FakeOpenAI, http: httpx.AsyncClient, clock: RecordingClock
) -> None:
    server.script(Fault.status(400, message="bad request"))
    client = ChatCompletionsClient(http, endpoint_for(server, max_retries=3), clock)

    _events, error = await collect(client, ask())

    assert isinstance(error, LLMRejected)
    assert len(server.chat_requests) == 1
    assert clock.sleeps == []


@pytest.mark.parametrize(
    "fault",
    [
        Fault.drop_mid_stream(after_chunks=0),
        Fault.error_chunk(after=0, message="overloaded"),
        Fault.no_finish_reason(Reply(text="")),
    ],
    ids=["dropped", "error-chunk", "empty-truncated"],
)
async def test_stream_failures_before_the_first_delta_are_retried(
    server: FakeOpenAI, http: httpx.AsyncClient, clock: RecordingClock, fault: Fault
) -> None:
    server.script(fault)
    client = ChatCompletionsClient(http, endpoint_for(server, max_retries=1), clock)

    events, error = await collect(client, ask("again"))

    assert error is None
    assert text_of(events) == "echo: again"
    assert len(server.chat_requests) == 2
    assert len(clock.sleeps) == 1


@pytest.mark.parametrize(
    ("fault", "error_type"),
    [
        (Fault.drop_mid_stream(after_chunks=2), LLMStreamError),
        (Fault.error_chunk(after=2, message="boom"), LLMStreamError),
        (Fault.error_chunk(after=2, code=429, message="slow down"), LLMRateLimited),
    ],
    ids=["dropped", "error-chunk", "rate-limit-chunk"],
)
async def test_never_retries_after_the_first_delta(
    server: FakeOpenAI,
    http: httpx.AsyncClient,
    clock: RecordingClock,
    fault: Fault,
    error_type: type[LLMError],
) -> None:
    server.script(fault)
    client = ChatCompletionsClient(http, endpoint_for(server, max_retries=3), clock)

    events, error = await collect(client, ask("one two three"))

    assert [e.text for e in events if isinstance(e, ContentDelta)] == ["echo:", " one"]
    assert type(error) is error_type
    assert len(server.chat_requests) == 1
    assert clock.sleeps == []


async def test_complete_retries_too(
    server: FakeOpenAI, http: httpx.AsyncClient, clock: RecordingClock
) -> None:
    server.script(Fault.status(429, retry_after=0.5))
    client = ChatCompletionsClient(http, endpoint_for(server, max_retries=1), clock)

    completion = await client.complete(ask("hi"))

    assert completion.texts == ("echo: hi",)
    assert clock.sleeps == [0.5]


# -- adaptive fallbacks -----------------------------------------------------------------


async def test_stream_options_refusal_falls_back_once_and_is_remembered(
    http: httpx.AsyncClient, clock: RecordingClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="core.llm")
    async with FakeOpenAI(supports_stream_options=False) as server:
        client = ChatCompletionsClient(http, endpoint_for(server, api_key=None), clock)

        first, error = await collect(client, ask("one"))
        second, second_error = await collect(client, ask("two"))

        bodies = [request.json for request in server.chat_requests]
    assert error is None and second_error is None
    assert text_of(first) == "echo: one"
    assert text_of(second) == "echo: two"
    assert ["stream_options" in body for body in bodies] == [True, False, False]
    assert client.sends_stream_options is False
    assert clock.sleeps == []
    assert any(
        record.levelno == logging.INFO and "stream_options" in record.getMessage()
        for record in caplog.records
    )


async def test_one_off_stream_options_refusal(server: FakeOpenAI, http: httpx.AsyncClient) -> None:
    server.script(Fault.reject_stream_options())
    client = ChatCompletionsClient(http, endpoint_for(server))

    events, error = await collect(client, ask("x"))

    assert error is None
    assert text_of(events) == "echo: x"
    assert [("stream_options" in r.json) for r in server.chat_requests] == [True, False]


async def test_max_tokens_refusal_switches_to_max_completion_tokens(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="core.llm")
    async with FakeOpenAI(supports_max_tokens=False) as server:
        client = ChatCompletionsClient(http, endpoint_for(server, api_key=None))

        events, error = await collect(client, ask("one", max_tokens=50))
        completion = await client.complete(ask("two", max_tokens=60))

        bodies = [request.json for request in server.chat_requests]
    assert error is None
    assert text_of(events) == "echo: one"
    assert completion.text == "echo: two"
    assert bodies[0]["max_tokens"] == 50
    assert "max_completion_tokens" not in bodies[0]
    assert bodies[1]["max_completion_tokens"] == 50
    assert "max_tokens" not in bodies[1]
    assert bodies[2]["max_completion_tokens"] == 60
    assert len(bodies) == 3
    assert client.uses_max_completion_tokens is True
    assert any("max_completion_tokens" in record.getMessage() for record in caplog.records)


async def test_unrelated_400_does_not_trigger_a_fallback(
    server: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    server.script(Fault.status(400, message="messages: too long"))
    client = ChatCompletionsClient(http, endpoint_for(server))

    _events, error = await collect(client, ask(max_tokens=5))

    assert isinstance(error, LLMRejected)
    assert len(server.chat_requests) == 1
    assert client.sends_stream_options is True
    assert client.uses_max_completion_tokens is False


# -- the API key never leaks -------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Fault.status(401, message=f"bad key {API_KEY}"),
        Fault.status(500, message=f"upstream said {API_KEY}"),
        Fault.status(429, message=f"quota for {API_KEY}"),
        Fault.error_chunk(after=1, message=f"key {API_KEY} revoked"),
        Fault.error_chunk(after=0, style="vllm", message=f"key {API_KEY} revoked"),
    ],
    ids=["401", "500", "429", "error-chunk", "vllm-error-first"],
)
async def test_api_key_never_appears_in_errors_or_logs(
    server: FakeOpenAI,
    http: httpx.AsyncClient,
    clock: RecordingClock,
    caplog: pytest.LogCaptureFixture,
    fault: Fault,
) -> None:
    caplog.set_level(logging.DEBUG)
    server.script(fault, fault)
    client = ChatCompletionsClient(http, endpoint_for(server, max_retries=1), clock)

    _events, error = await collect(client, ask())

    assert isinstance(error, LLMError)
    assert server.chat_requests[0].headers["authorization"] == f"Bearer {API_KEY}"
    assert "<redacted>" in str(error)
    chain: BaseException | None = error
    while chain is not None:
        assert API_KEY not in str(chain)
        assert API_KEY not in repr(chain)
        chain = chain.__cause__ or chain.__context__
    assert API_KEY not in caplog.text
    assert all(API_KEY not in str(record.args) for record in caplog.records)
    assert API_KEY not in repr(client.endpoint)
