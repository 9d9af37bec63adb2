"""Fixtures of the Slack tests: a fake Slack, the service's environment, waiting helpers."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.service_process import ThreadlineProcess
from tests.fakes.slack_server import FakeSlack

USERS = {"U1": "Ada Lovelace", "U2": "Grace Hopper", "U3": "Alan Turing"}


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(users=USERS) as server:
        yield server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def slack_env(
    slack: FakeSlack,
    llm: FakeOpenAI,
    tmp_path: Path,
    *,
    http_port: int | None = None,
    database_url: str | None = None,
    **extra: str,
) -> dict[str, str]:
    """The service's environment: Socket Mode, or HTTP events mode when `http_port` is given."""
    env = {
        "OPENAI_BASE_URL": llm.base_url,
        "OPENAI_API_KEY": "sk-slack-test-secret",
        "THREADLINE_MODEL": "fake-model",
        "THREADLINE_MAX_RETRIES": "0",
        "THREADLINE_USER_HASH_KEY": "slack-test-user-hash-key",
        "DATABASE_URL": database_url or f"sqlite+aiosqlite:///{tmp_path}/t.db",
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_API_URL": slack.api_url,
    }
    if http_port is None:
        env["SLACK_APP_TOKEN"] = slack.app_token
    else:
        env["SLACK_SIGNING_SECRET"] = slack.signing_secret
        env["SLACK_HTTP_HOST"] = "127.0.0.1"
        env["SLACK_HTTP_PORT"] = str(http_port)
        env["SLACK_HTTP_PATH"] = "/slack/events"
    env.update(extra)
    return env


async def connected(service: ThreadlineProcess, slack: FakeSlack, count: int = 1) -> None:
    """Until `count` Socket Mode clients are connected."""
    await service.wait_until(
        lambda: len(slack.sockets) >= count, within=30, what="the socket mode connection"
    )


async def listening(service: ThreadlineProcess) -> None:
    await service.wait_until(
        lambda: "slack HTTP events listening" in service.output, within=30, what="the listener"
    )


async def answered(
    service: ThreadlineProcess,
    slack: FakeSlack,
    channel: str,
    thread_ts: str,
    expected: str | Callable[[list[str]], bool],
    *,
    within: float = 30,
) -> list[str]:
    """Until the thread's bot messages are final and read `expected`; returns them."""

    def done() -> bool:
        if not slack.thread_final(channel, thread_ts):
            return False
        texts = slack.thread_text(channel, thread_ts)
        return expected(texts) if callable(expected) else "".join(texts) == expected

    await service.wait_until(done, within=within, what=f"the answer in {channel}/{thread_ts}")
    return slack.thread_text(channel, thread_ts)


async def settle(seconds: float = 0.5) -> None:
    """Give the service time to (wrongly) do more; used only after the expected work is seen."""
    await asyncio.sleep(seconds)


ADMIN_DSN = os.environ.get(
    "THREADLINE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database (asyncpg URL), dropped afterwards."""
    import asyncpg

    name = f"threadline_slack_{uuid.uuid4().hex[:12]}"
    try:
        admin = await asyncpg.connect(ADMIN_DSN, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        reason = f"PostgreSQL unreachable: {type(exc).__name__}"
        if os.environ.get("THREADLINE_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{reason} (THREADLINE_REQUIRE_POSTGRES=1)")
        pytest.skip(reason)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = ADMIN_DSN.rpartition("/")[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(ADMIN_DSN, timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
