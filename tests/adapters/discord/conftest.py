"""Fixtures for the Discord channel: a fake Discord, a fake LLM and `threadline run` between."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.discord_server import FakeDiscord
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.service_process import ThreadlineProcess

TOKEN = "discord-test-token.Xy9-secret-value"


def discord_env(tmp_path: Path, fake: FakeDiscord, llm: FakeOpenAI, **extra: str) -> dict[str, str]:
    env = {
        "OPENAI_BASE_URL": llm.base_url,
        "OPENAI_API_KEY": "sk-discord-test",
        "THREADLINE_MODEL": "fake-model",
        "THREADLINE_MAX_RETRIES": "0",
        "DISCORD_BOT_TOKEN": fake.token,
        "DISCORD_API_URL": fake.api_url,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/t.db",
        "THREADLINE_USER_HASH_KEY": "discord-test-user-hash-key-0123456789",
    }
    env.update(extra)
    return env


Start = Callable[..., Awaitable[ThreadlineProcess]]


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(token=TOKEN) as fake:
        yield fake


@asynccontextmanager
async def running(
    tmp_path: Path, fake: FakeDiscord, llm: FakeOpenAI, shards: int = 1, **extra: str
) -> AsyncIterator[ThreadlineProcess]:
    """`threadline run` against the fakes, connected (READY sent) and commands registered."""
    async with ThreadlineProcess(tmp_path, discord_env(tmp_path, fake, llm, **extra)) as proc:
        await proc.wait_until(
            lambda: fake.ready_shards >= shards and bool(fake.commands),
            within=30,
            what="the bot to connect to the fake gateway",
        )
        yield proc


def user_turns(request_json: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, content) of every message after the system prompt."""
    return [(m["role"], m["content"]) for m in request_json["messages"][1:]]
