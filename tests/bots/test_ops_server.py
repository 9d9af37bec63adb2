"""`threadline run` serves /healthz, /readyz and /metrics, and logs JSON lines when asked."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.adapters.telegram.conftest import tg_env
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.service_process import ThreadlineProcess
from tests.fakes.telegram_server import FakeTelegram


@pytest.fixture
async def fake_tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


async def _get(port: int, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return response.status, await response.text()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_health_readiness_and_metrics_of_a_running_service(
    tmp_path: Path, fake_llm: FakeOpenAI, fake_tg: FakeTelegram
) -> None:
    tg, llm = fake_tg, fake_llm
    alice = tg.user("Alice")
    chat = tg.private_chat(alice)
    llm.script(Reply(text="one two three", delay_first=0.2))
    env = tg_env(tg, llm, tmp_path, THREADLINE_LOG_FORMAT="json")
    async with ThreadlineProcess(tmp_path, env) as proc:
        await proc.wait_until(lambda: proc.http_port is not None, what="the http server")
        port = proc.http_port
        assert port is not None
        assert await _get(port, "/healthz") == (200, "ok\n")
        await proc.wait_until(lambda: bool(tg.commands), within=30, what="the bot to start")
        status, body = await _get(port, "/readyz")
        assert status == 200
        assert json.loads(body) == {
            "ready": True,
            "checks": {"database": "ok", "telegram": "ok"},
        }
        tg.send(chat, alice, "count please")
        await proc.wait_until(
            lambda: any(m.text == "one two three" for m in tg.bot_messages(chat)),
            what="the answer",
        )
        await proc.wait_until(
            lambda: '"outcome": "complete"' in proc.output, what="the answer's log line"
        )
        status, metrics = await _get(port, "/metrics")
    assert status == 200
    for expected in (
        'threadline_answers_finished_total{outcome="complete",platform="telegram"} 1.0',
        'threadline_answers_started_total{platform="telegram"} 1.0',
        'threadline_answers_active{platform="telegram"} 0.0',
        "threadline_llm_first_token_seconds_count 1.0",
        'threadline_platform_api_calls_total{method="sendMessage",platform="telegram",'
        'result="ok"} 1.0',
        "threadline_queued_messages 0.0",
    ):
        assert expected in metrics, expected
    assert 'threadline_db_seconds_count{action="finishing a streamed answer"} 1.0' in metrics
    assert 'threadline_pacer_wait_seconds_count{platform="telegram"}' in metrics

    lines = [line for line in proc.output.splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    [answer] = [e for e in entries if e.get("logger") == "threadline.answers"]
    assert answer["outcome"] == "complete" and answer["platform"] == "telegram"
    assert answer["completion_tokens"] > 0 and answer["first_token_seconds"] >= 0.2
    for secret in (env["OPENAI_API_KEY"], tg.token, env["THREADLINE_USER_HASH_KEY"]):
        assert secret not in proc.output


async def test_readyz_says_which_dependency_is_missing(
    tmp_path: Path, fake_llm: FakeOpenAI, fake_tg: FakeTelegram
) -> None:
    env = tg_env(
        fake_tg,
        fake_llm,
        tmp_path,
        REDIS_URL=f"redis://:redis-password-123@127.0.0.1:{_closed_port()}/0",
    )
    async with ThreadlineProcess(tmp_path, env) as proc:
        await proc.wait_until(lambda: bool(fake_tg.commands), within=30, what="the bot")
        port = proc.http_port
        assert port is not None
        status, body = await _get(port, "/readyz")
    assert status == 503
    checks = json.loads(body)["checks"]
    assert checks["database"] == "ok" and checks["telegram"] == "ok"
    assert checks["redis"].startswith("failed")
    assert "redis-password-123" not in body and "redis-password-123" not in proc.output
