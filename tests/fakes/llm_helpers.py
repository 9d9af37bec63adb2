"""Helpers shared by the LLM client tests: endpoints, requests, event collection, a clock."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import httpx

from core.llm import (
    ChatCompletionsClient,
    ChatMessage,
    ChatParams,
    ChatRequest,
    ContentDelta,
    LLMEndpoint,
    StreamEvent,
)
from tests.fakes.openai_server import FakeOpenAI


class RecordingClock:
    """Records the retry waits instead of sleeping through them."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


class ConnectionCounter:
    """Counts the TCP connections an httpx client opens, from httpcore's trace events.

    `client()` makes an `httpx.AsyncClient` whose every request carries the trace hook.
    """

    def __init__(self) -> None:
        self.opened = 0

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(event_hooks={"request": [self._add_trace]}, **kwargs)

    async def _add_trace(self, request: httpx.Request) -> None:
        request.extensions["trace"] = self._trace

    async def _trace(self, event: str, info: dict[str, Any]) -> None:
        if event == "connection.connect_tcp.complete":
            self.opened += 1


def endpoint_for(server: FakeOpenAI, **overrides: Any) -> LLMEndpoint:
    """An endpoint at `server` with short timeouts, no retries and tiny retry delays."""
    base = LLMEndpoint(
        base_url=server.base_url,
        first_token_timeout=5,
        chunk_timeout=5,
        total_timeout=10,
        max_retries=0,
        retry_base_delay=0.01,
        retry_max_delay=0.05,
    )
    return dataclasses.replace(base, **overrides)


def ask(
    text: str = "hello world",
    *,
    system: str | None = None,
    model: str = "fake-model",
    name: str | None = None,
    stream: bool = True,
    **params: Any,
) -> ChatRequest:
    """A request with one user message `text`, after a system message if `system` is given."""
    user = ChatMessage("user", text, name=name)
    messages = (ChatMessage("system", system), user) if system is not None else (user,)
    return ChatRequest(
        messages=messages,
        params=ChatParams(model=model, **params),
        stream=stream,
    )


async def collect(
    client: ChatCompletionsClient, request: ChatRequest
) -> tuple[list[StreamEvent], Exception | None]:
    """Every event `client.stream(request)` yields, and the exception it ended with, if any."""
    events: list[StreamEvent] = []
    try:
        async for event in client.stream(request):
            events.append(event)
    except Exception as exc:
        return events, exc
    return events, None


def text_of(events: list[StreamEvent]) -> str:
    """All the streamed text, every choice run together."""
    return "".join(event.text for event in events if isinstance(event, ContentDelta))


def texts_of(events: list[StreamEvent]) -> dict[int, str]:
    """The streamed text of each choice, by choice index."""
    texts: dict[int, str] = {}
    for event in events:
        if isinstance(event, ContentDelta):
            texts[event.choice] = texts.get(event.choice, "") + event.text
    return texts
