"""The fakes the streaming tests rely on: VirtualClock and BudgetSink."""

from __future__ import annotations

import asyncio

import pytest

from core.errors import SinkRateLimited, SinkRejected
from core.streaming import PaceScope, SinkLimits, WriteKind, count_utf16
from tests.fakes.budget_sink import Budget, Platform
from tests.fakes.virtual_clock import VirtualClock, VirtualDeadlock


async def test_virtual_time_jumps_only_when_every_task_waits() -> None:
    with VirtualClock.install() as clock:
        order: list[tuple[str, float]] = []

        async def sleeper(name: str, seconds: float) -> None:
            await clock.sleep(seconds)
            order.append((name, clock.now()))

        await asyncio.gather(sleeper("b", 3600), sleeper("a", 0.5), asyncio.sleep(10))
        assert order == [("a", 0.5), ("b", 3600)]
        async with asyncio.timeout(5):
            await asyncio.sleep(4.9)
        assert clock.now() == pytest.approx(3604.9)
        clock.advance(0.1)
        assert clock.now() == pytest.approx(3605.0)


def test_virtual_deadlock_is_reported_instead_of_hanging() -> None:
    async def stuck() -> None:
        with VirtualClock.install(deadlock_after=0.01):
            await asyncio.Event().wait()

    with pytest.raises(VirtualDeadlock):
        asyncio.run(stuck())


async def test_budget_answers_429_with_the_time_until_the_window_frees(
    clock: VirtualClock,
) -> None:
    scope = PaceScope("ws:update", rate=1.0)
    platform = Platform(clock, {"ws:update": Budget(2, 10.0)})
    sinks = [platform.sink(SinkLimits(max_length=50, edit_scopes=(scope,))) for _ in range(2)]
    first = await sinks[0].post("a")
    second = await sinks[1].post("b")
    await sinks[0].edit(first, "a2")
    await clock.sleep(3.0)
    await sinks[1].edit(second, "b2")  # the shared budget (2 per 10 s) is now spent
    with pytest.raises(SinkRateLimited) as raised:
        await sinks[0].edit(first, "a3")
    assert raised.value.retry_after == pytest.approx(7.0)
    assert platform.rate_limited == 1 and platform.rate_limited_by_key["ws:update"] == 1
    await clock.sleep(7.0)
    await sinks[0].edit(first, "a3")
    assert sinks[0].texts() == ["a3"] and sinks[1].texts() == ["b2"]


async def test_sink_rejects_long_empty_and_unmodified_texts(clock: VirtualClock) -> None:
    platform = Platform(clock, not_modified="reject")
    sink = platform.sink(SinkLimits(max_length=4, measure=count_utf16))
    with pytest.raises(SinkRejected, match="too long"):
        await sink.post("\U0001f600\U0001f600\U0001f600")  # 6 UTF-16 units
    with pytest.raises(SinkRejected, match="empty"):
        await sink.post("  ")
    message = await sink.post("ok")
    with pytest.raises(SinkRejected, match="not modified"):
        await sink.edit(message, "ok")
    await sink.finalize(message, "ok!")
    with pytest.raises(SinkRejected, match="finalized"):
        await sink.edit(message, "late")
    assert platform.not_modified_errors == 1 and platform.protocol_errors
    assert [r.outcome for r in sink.records()].count("rejected") == 4


async def test_sink_latency_and_in_flight_tracking(clock: VirtualClock) -> None:
    platform = Platform(clock, latency=0.5)
    sink = platform.sink(SinkLimits(max_length=100))
    ids = await asyncio.gather(sink.post("a"), sink.post("b"))
    assert clock.now() == pytest.approx(0.5)
    assert sink.max_in_flight == 2 and sorted(sink.texts()) == ["a", "b"]
    assert {r.kind for r in sink.records()} == {WriteKind.POST} and len(set(ids)) == 2
