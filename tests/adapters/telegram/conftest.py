"""Fixtures of the Telegram tests: the fake Bot API and the environment of a threadline run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.telegram_server import FakeTelegram

HASH_KEY = "telegram-tests-user-hash-key-0123456789abcdef"


@pytest.fixture
async def fake_tg() -> AsyncIterator[FakeTelegram]:
    """A FakeTelegram Bot API on 127.0.0.1 for one test."""
    async with FakeTelegram() as server:
        yield server


def tg_env(tg: FakeTelegram, llm: FakeOpenAI, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The settings of a `threadline run` against the two fakes, with a database in tmp_path."""
    env = {
        **tg.env(),
        "OPENAI_BASE_URL": llm.base_url,
        "OPENAI_API_KEY": "sk-telegram-test-secret",
        "THREADLINE_MODEL": "fake-model",
        "THREADLINE_MAX_RETRIES": "0",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/t.db",
        "THREADLINE_USER_HASH_KEY": HASH_KEY,
    }
    env.update(extra)
    return env
