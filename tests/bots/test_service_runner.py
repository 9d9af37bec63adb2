"""`threadline run`: every enabled channel on one TaskGroup, stopped cleanly by a signal."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bots import service_runner
from bots.config import load_settings
from bots.service_runner import run_channels
from bots.wiring import Runtime, build_runtime
from core.errors import ConfigError


@asynccontextmanager
async def runtime_for(tmp_path: Path, **platform: str) -> AsyncIterator[Runtime]:
    """A runtime on a scratch database with the given platform variables set."""
    settings = load_settings(
        None,
        DATABASE_URL=f"sqlite:///{tmp_path / 'run.db'}",
        THREADLINE_USER_HASH_KEY="k" * 16,
        THREADLINE_CONTEXT_WINDOW="8000",  # else start-up asks the (default, remote) server
        THREADLINE_HTTP_PORT="",  # no operations server: tests run side by side
        **platform,
    )
    runtime = await build_runtime(settings)
    try:
        yield runtime
    finally:
        await runtime.aclose()


async def test_channels_run_until_sigterm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[str] = []
    cancelled: list[str] = []

    async def fake_channel(runtime: object) -> None:
        started.append("telegram")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append("telegram")
            raise

    monkeypatch.setitem(service_runner.CHANNELS, "telegram", fake_channel)
    async with runtime_for(tmp_path, TELEGRAM_BOT_TOKEN="123:abc") as runtime:
        task = asyncio.create_task(run_channels(runtime, interactive=False))
        for _ in range(100):
            if started:
                break
            await asyncio.sleep(0.01)
        assert started == ["telegram"]
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(task, 5) == 0
        assert cancelled == ["telegram"]


async def test_a_channel_missing_from_the_build_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(service_runner.CHANNEL_MODULES, "discord", "bots.no_such_channel")
    async with runtime_for(tmp_path, DISCORD_BOT_TOKEN="token") as runtime:
        assert await run_channels(runtime, interactive=False) == 2


async def test_a_channel_refusing_to_start_stops_the_service_with_its_own_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refusing_channel(runtime: object) -> None:
        raise ConfigError("TELEGRAM_BOT_TOKEN", "the Bot API rejected the token")

    monkeypatch.setitem(service_runner.CHANNELS, "telegram", refusing_channel)
    async with runtime_for(tmp_path, TELEGRAM_BOT_TOKEN="123:abc") as runtime:
        with pytest.raises(ConfigError, match="rejected the token"):
            await asyncio.wait_for(run_channels(runtime, interactive=False), 5)
