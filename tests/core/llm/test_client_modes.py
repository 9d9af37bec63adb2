"""ChatCompletionsClient endpoint modes (OpenAI, Azure, key-less), complete() and list_models()."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import pytest

from core.errors import LLMRateLimited, LLMRejected, LLMStreamError
from core.llm import (
    ChatCompletionsClient,
    ChatRequest,
    Completion,
    ContentDelta,
    LLMEndpoint,
    UsageReport,
)
from tests.fakes import llm_helpers
from tests.fakes.openai_server import FakeOpenAI, Fault, Reply

API_KEY = "sk-modes-KEY-42424242"


def ask(text: str = "hello", stream: bool = True, **params: Any) -> ChatRequest:
    return llm_helpers.ask(text, model="gpt-test", name="Zoë Smith", stream=stream, **params)


async def streamed_text(client: ChatCompletionsClient, request: ChatRequest) -> str:
    parts = []
    async for event in client.stream(request):
        if isinstance(event, ContentDelta):
            parts.append(event.text)
    return "".join(parts)


def endpoint(base_url: str, **overrides: Any) -> LLMEndpoint:
    base = LLMEndpoint(base_url=base_url, max_retries=0, first_token_timeout=5, chunk_timeout=5)
    return dataclasses.replace(base, **overrides)


async def test_openai_style_bearer_auth(http: httpx.AsyncClient) -> None:
    async with FakeOpenAI(require_key=API_KEY) as server:
        client = ChatCompletionsClient(http, endpoint(server.base_url + "/", api_key=API_KEY))

        text = await streamed_text(client, ask("hi"))

        (request,) = server.chat_requests
    assert text == "echo: hi"
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert "api-key" not in request.headers
    assert request.headers["accept"] == "text/event-stream"
    assert request.json["messages"][0]["name"] == "Zoe_Smith"


async def test_azure_deployment_url_api_key_header_and_api_version(
    http: httpx.AsyncClient,
) -> None:
    async with FakeOpenAI(require_key=API_KEY) as server:
        azure = endpoint(
            server.azure_base_url("gpt4o-prod"),
            api_key=API_KEY,
            auth_style="api-key",
            api_version="2024-10-21",
        )
        client = ChatCompletionsClient(http, azure)

        text = await streamed_text(client, ask("azure"))
        completion = await client.complete(ask("again", stream=False))

        requests = server.chat_requests
    assert text == "echo: azure"
    assert completion.text == "echo: again"
    for request in requests:
        assert request.path == "/openai/deployments/gpt4o-prod/chat/completions"
        assert request.query == {"api-version": "2024-10-21"}
        assert request.headers["api-key"] == API_KEY
        assert "authorization" not in request.headers


async def test_azure_without_api_version_is_rejected(http: httpx.AsyncClient) -> None:
    async with FakeOpenAI(require_key=API_KEY) as server:
        azure = endpoint(server.azure_base_url(), api_key=API_KEY, auth_style="api-key")
        client = ChatCompletionsClient(http, azure)

        with pytest.raises(LLMRejected) as caught:
            await streamed_text(client, ask())

    assert caught.value.status == 400
    assert "api-version" in caught.value.message


@pytest.mark.parametrize(
    "overrides",
    [{"api_key": None}, {"api_key": "sk-ignored", "auth_style": "none"}],
    ids=["no-key", "auth-none"],
)
async def test_key_less_local_server_gets_no_auth_header(
    http: httpx.AsyncClient, overrides: dict[str, Any]
) -> None:
    async with FakeOpenAI() as server:
        client = ChatCompletionsClient(http, endpoint(server.base_url, **overrides))

        text = await streamed_text(client, ask("local"))

        (request,) = server.chat_requests
    assert text == "echo: local"
    assert "authorization" not in request.headers
    assert "api-key" not in request.headers


async def test_complete_returns_every_choice_with_reasons_and_usage(
    http: httpx.AsyncClient,
) -> None:
    async with FakeOpenAI() as server:
        server.script(Reply(texts=["first", "second"], finish_reason="length"))
        client = ChatCompletionsClient(http, endpoint(server.base_url))

        completion = await client.complete(ask("x", n=2, max_tokens=3))

        (request,) = server.chat_requests
    assert completion == Completion(
        texts=("first", "second"),
        finish_reasons=("length", "length"),
        usage=UsageReport(prompt_tokens=1, completion_tokens=2, total_tokens=3),
        model="gpt-test",
    )
    assert request.json["stream"] is False
    assert "stream_options" not in request.json
    assert request.headers["accept"] == "application/json"


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply(text="Final answer.", quirks={"think_tags"}), "Final answer."),
        (Reply(text="Shown.", quirks={"reasoning"}), "Shown."),
        (Reply(text="", refusal="I must decline."), "I must decline."),
    ],
    ids=["think-tags", "reasoning", "refusal"],
)
async def test_complete_shows_only_the_visible_answer(
    http: httpx.AsyncClient, reply: Reply, expected: str
) -> None:
    async with FakeOpenAI() as server:
        server.script(reply)
        client = ChatCompletionsClient(http, endpoint(server.base_url))

        completion = await client.complete(ask())

    assert completion.texts == (expected,)


async def test_complete_reads_groq_usage(http: httpx.AsyncClient) -> None:
    async with FakeOpenAI() as server:
        server.script(Reply(text="a b c", quirks={"groq_usage"}))
        client = ChatCompletionsClient(http, endpoint(server.base_url))

        completion = await client.complete(ask())

    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3


@pytest.mark.parametrize(
    ("fault", "error_type"),
    [
        (Fault.error_chunk(message="engine died"), LLMStreamError),
        (Fault.error_chunk(style="vllm", code=429, message="busy"), LLMRateLimited),
    ],
)
async def test_complete_raises_an_error_body_sent_with_200(
    http: httpx.AsyncClient, fault: Fault, error_type: type[Exception]
) -> None:
    async with FakeOpenAI() as server:
        server.script(fault)
        client = ChatCompletionsClient(http, endpoint(server.base_url))

        with pytest.raises(error_type):
            await client.complete(ask())


async def test_list_models(http: httpx.AsyncClient) -> None:
    async with FakeOpenAI(require_key=API_KEY, models=("alpha", "beta")) as server:
        client = ChatCompletionsClient(http, endpoint(server.base_url, api_key=API_KEY))

        models = await client.list_models()

        (request,) = server.requests
    assert models == ["alpha", "beta"]
    assert request.method == "GET"
    assert request.path == "/v1/models"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"


async def test_list_models_on_a_server_without_it_is_rejected(http: httpx.AsyncClient) -> None:
    async with FakeOpenAI(models=None) as server:
        client = ChatCompletionsClient(http, endpoint(server.base_url))

        with pytest.raises(LLMRejected) as caught:
            await client.list_models()

    assert caught.value.status == 404


async def test_list_models_on_an_azure_deployment_is_rejected(http: httpx.AsyncClient) -> None:
    async with FakeOpenAI() as server:
        azure = endpoint(
            server.azure_base_url(), api_key="k", auth_style="api-key", api_version="2024-10-21"
        )
        client = ChatCompletionsClient(http, azure)

        with pytest.raises(LLMRejected):
            await client.list_models()
