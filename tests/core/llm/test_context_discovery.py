"""The fake's context modes through the real client: each wording, what each server publishes."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bots.config import load_settings
from bots.wiring import discover_context_window, service_config
from core.errors import ConfigError, LLMContextTooLong
from core.llm import ChatCompletionsClient, ChatMessage, ChatParams, ChatRequest, LLMEndpoint
from core.settings import DEFAULT_CONTEXT_WINDOW
from tests.fakes.openai_server import CONTEXT_STYLES, FakeOpenAI, Reply, count_prompt_tokens

SIZE = 2048
STATES_SIZE = {"openai", "vllm", "llamacpp", "openrouter", "lmstudio"}


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def client(http: httpx.AsyncClient, server: FakeOpenAI, **endpoint: Any) -> ChatCompletionsClient:
    settings = LLMEndpoint(base_url=server.base_url, retry_base_delay=0.01, **endpoint)
    return ChatCompletionsClient(http, settings)


def request(text: str, **params: Any) -> ChatRequest:
    message = ChatMessage(role="user", content=text)
    return ChatRequest((message,), ChatParams(model="fake-model", **params))


@pytest.mark.parametrize("style", sorted(CONTEXT_STYLES))
async def test_each_server_rejects_a_long_request_in_its_words_and_it_is_not_retried(
    http: httpx.AsyncClient, style: str
) -> None:
    async with FakeOpenAI(context_size=SIZE, context_style=style) as server:
        llm = client(http, server, max_retries=3)
        server.script(Reply(text="scripted"))  # for the request that fits
        text = "x" * (SIZE * 4)
        with pytest.raises(LLMContextTooLong) as caught:
            async for _ in llm.stream(request(text)):
                pass
        assert len(server.chat_requests) == 1 and server.context_rejections == 1
        error = caught.value
        assert error.status == 400
        sent = count_prompt_tokens(server.chat_requests[0].json)
        if style in STATES_SIZE:
            assert (error.limit, error.prompt_tokens) == (SIZE, sent)
        else:
            assert (error.limit, error.prompt_tokens) == (None, None)
        # What fits is answered, as scripted.
        answer = await llm.complete(request("short"))
        assert answer.texts == ("scripted",) and server.context_rejections == 1


async def test_a_reply_limit_counts_against_the_context_where_the_server_counts_it(
    http: httpx.AsyncClient,
) -> None:
    async with FakeOpenAI(context_size=SIZE, context_style="vllm") as server:
        llm = client(http, server, max_retries=0)
        with pytest.raises(LLMContextTooLong) as caught:
            await llm.complete(request("hello", max_tokens=SIZE))
        assert "in the completion" in caught.value.message


@pytest.mark.parametrize("style", ["vllm", "openrouter", "llamacpp"])
async def test_the_published_context_size_is_read(http: httpx.AsyncClient, style: str) -> None:
    async with FakeOpenAI(context_size=SIZE, context_style=style) as server:
        assert await client(http, server).published_context_window("fake-model") == SIZE
        assert await client(http, server).published_context_window("other-model") == (
            SIZE if style == "llamacpp" else None  # llama.cpp serves one model, whatever its name
        )


@pytest.mark.parametrize("style", ["openai", "groq", "ollama", "lmstudio"])
async def test_servers_that_publish_nothing_give_none(http: httpx.AsyncClient, style: str) -> None:
    async with FakeOpenAI(context_size=SIZE, context_style=style) as server:
        assert await client(http, server).published_context_window("fake-model") is None


async def test_a_server_that_is_down_at_start_publishes_nothing(http: httpx.AsyncClient) -> None:
    async with FakeOpenAI() as server:
        llm = client(http, server, connect_timeout=1.0)
    assert await llm.published_context_window("fake-model") is None


async def test_start_up_uses_the_published_size_only_when_the_setting_is_unset(
    http: httpx.AsyncClient,
) -> None:
    async with FakeOpenAI(context_size=SIZE, context_style="llamacpp") as server:
        llm = client(http, server)
        unset = load_settings(None, OPENAI_BASE_URL=server.base_url, THREADLINE_MODEL="fake-model")
        assert unset.context_window is None
        config = service_config(unset)
        assert config.context_window == DEFAULT_CONTEXT_WINDOW
        discovered = await discover_context_window(unset, config, llm)
        assert discovered == dataclasses.replace(config, context_window=SIZE)
        chosen = load_settings(
            None, OPENAI_BASE_URL=server.base_url, THREADLINE_CONTEXT_WINDOW="8000"
        )
        config = service_config(chosen)
        assert await discover_context_window(chosen, config, llm) is config
        assert config.context_window == 8000
        too_big = load_settings(
            None,
            OPENAI_BASE_URL=server.base_url,
            THREADLINE_MODEL="fake-model",
            THREADLINE_MAX_TOKENS="4096",
        )
        with pytest.raises(ConfigError) as caught:
            await discover_context_window(too_big, service_config(too_big), llm)
        assert caught.value.setting == "THREADLINE_MAX_TOKENS"
        assert str(SIZE) in caught.value.message
