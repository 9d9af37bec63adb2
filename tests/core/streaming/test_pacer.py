"""Pacer: bucket math, priorities, the reserve for finals, pauses, multi-scope grants, scale."""

from __future__ import annotations

import asyncio
import random

import pytest

from core.streaming import Pacer, PaceScope, Priority, StreamPolicy
from tests.fakes.virtual_clock import VirtualClock

CHAT = PaceScope("tg:chat:1", rate=1.0, burst=1.0)
BOT = PaceScope("tg:bot", rate=30.0, burst=30.0)
WORKSPACE = PaceScope("slack:T1:chat.update", rate=40 / 60, burst=5.0)


def make_pacer(clock: VirtualClock, **policy: float) -> Pacer:
    return Pacer(clock, StreamPolicy(pause_jitter=0.0, **policy), rng=random.Random(7))  # type: ignore[arg-type]


async def grant_time(
    pacer: Pacer, clock: VirtualClock, scopes: list[PaceScope], priority: Priority
) -> float:
    await pacer.acquire(scopes, priority)
    return clock.now()


async def test_burst_then_steady_rate(clock: VirtualClock) -> None:
    pacer = make_pacer(clock)
    scope = PaceScope("s", rate=2.0, burst=3.0)
    times = [await grant_time(pacer, clock, [scope], Priority.FINAL) for _ in range(7)]
    assert times == pytest.approx([0, 0, 0, 0.5, 1.0, 1.5, 2.0])
    assert pacer.stats()["s"].grants == 7


async def test_tokens_refill_up_to_burst_only(clock: VirtualClock) -> None:
    pacer = make_pacer(clock)
    scope = PaceScope("s", rate=1.0, burst=2.0)
    await pacer.acquire([scope], Priority.FINAL)
    await clock.sleep(100)
    times = [await grant_time(pacer, clock, [scope], Priority.FINAL) for _ in range(3)]
    assert [t - 100 for t in times] == pytest.approx([0, 0, 1.0])


async def test_empty_scopes_are_free(clock: VirtualClock) -> None:
    pacer = make_pacer(clock)
    for _ in range(100):
        await pacer.acquire([], Priority.EDIT)
    assert clock.now() == 0


async def test_invalid_scope_is_refused(clock: VirtualClock) -> None:
    pacer = make_pacer(clock)
    with pytest.raises(ValueError, match="rate > 0"):
        await pacer.acquire([PaceScope("bad", rate=0.0)], Priority.FINAL)


async def test_higher_priority_waiters_are_served_first(clock: VirtualClock) -> None:
    pacer = make_pacer(clock)
    scope = PaceScope("s", rate=1.0, burst=1.0)
    await pacer.acquire([scope], Priority.FINAL)  # empty the bucket
    order: list[str] = []

    async def want(name: str, priority: Priority) -> None:
        await pacer.acquire([scope], priority)
        order.append(name)

    async with asyncio.TaskGroup() as group:
        for name, priority in [
            ("typing", Priority.TYPING),
            ("edit1", Priority.EDIT),
            ("first", Priority.FIRST),
            ("edit2", Priority.EDIT),
            ("final", Priority.FINAL),
        ]:
            group.create_task(want(name, priority))
            await asyncio.sleep(0)
    assert order == ["final", "first", "edit1", "edit2", "typing"]
    assert clock.now() == pytest.approx(5.0)


async def test_edits_leave_a_reserve_for_finals(clock: VirtualClock) -> None:
    pacer = make_pacer(clock)
    times = [await grant_time(pacer, clock, [WORKSPACE], Priority.EDIT) for _ in range(4)]
    assert times == [0, 0, 0, 0]  # burst 5, reserve 1: four edits go at once
    edit = asyncio.ensure_future(grant_time(pacer, clock, [WORKSPACE], Priority.EDIT))
    await asyncio.sleep(0)
    assert not edit.done()
    assert await grant_time(pacer, clock, [WORKSPACE], Priority.FINAL) == 0  # the reserve
    assert await edit == pytest.approx(2 * 1.5)  # needs two tokens back: 1 to take + 1 reserve


async def test_reserve_is_capped_so_burst_one_buckets_still_edit(clock: VirtualClock) -> None:
    pacer = make_pacer(clock, reserve_tokens=3.0)
    times = [await grant_time(pacer, clock, [CHAT], Priority.EDIT) for _ in range(3)]
    assert times == pytest.approx([0, 1, 2])


async def test_typing_only_uses_spare_capacity(clock: VirtualClock) -> None:
    pacer = make_pacer(clock)  # typing reserve 2 tokens
    scope = PaceScope("s", rate=1.0, burst=4.0)
    assert [await grant_time(pacer, clock, [scope], Priority.TYPING) for _ in range(2)] == [0, 0]
    typing = asyncio.ensure_future(grant_time(pacer, clock, [scope], Priority.TYPING))
    await asyncio.sleep(0)
    assert not typing.done()
    assert await grant_time(pacer, clock, [scope], Priority.EDIT) == 0
    assert await typing == pytest.approx(2.0)


async def test_pause_stops_the_whole_scope_for_every_stream(clock: VirtualClock) -> None:
    pacer = make_pacer(clock)
    scope = PaceScope("s", rate=10.0, burst=10.0)
    other = PaceScope("other", rate=10.0, burst=10.0)
    assert pacer.pause([scope], retry_after=7.0) == pytest.approx(7.0)
    results = await asyncio.gather(
        *(grant_time(pacer, clock, [scope], Priority.FINAL) for _ in range(3)),
        grant_time(pacer, clock, [other], Priority.EDIT),
    )
    assert results[3] == 0  # other scopes are unaffected
    assert min(results[:3]) >= 7.0
    assert sorted(results[:3]) == pytest.approx([7.0, 7.1, 7.2])  # one token, then the rate
    stats = pacer.stats()["s"]
    assert stats.pauses == 1 and stats.paused_seconds == pytest.approx(7.0)


async def test_pause_adds_jitter(clock: VirtualClock) -> None:
    pacer = Pacer(clock, StreamPolicy(pause_jitter=0.5), rng=random.Random(1))
    ends = [pacer.pause([PaceScope(f"s{i}", 1.0)], 2.0) for i in range(20)]
    assert all(2.0 <= end <= 2.5 for end in ends)
    assert len(set(ends)) > 1


async def test_a_longer_pause_wins_and_waiters_wake_after_it(clock: VirtualClock) -> None:
    pacer = make_pacer(clock)
    scope = PaceScope("s", rate=1.0, burst=1.0)
    pacer.pause([scope], 2.0)
    waiter = asyncio.ensure_future(grant_time(pacer, clock, [scope], Priority.FINAL))
    await asyncio.sleep(0)
    pacer.pause([scope], 5.0)
    pacer.pause([scope], 1.0)  # shorter: ignored
    assert await waiter == pytest.approx(5.0)


async def test_multi_scope_takes_all_or_nothing(clock: VirtualClock) -> None:
    pacer = make_pacer(clock)
    await pacer.acquire([CHAT], Priority.FINAL)  # chat empty for 1 s
    both = asyncio.ensure_future(grant_time(pacer, clock, [CHAT, BOT], Priority.FINAL))
    await asyncio.sleep(0)
    assert pacer.stats()["tg:bot"].tokens == pytest.approx(30.0)  # nothing taken while waiting
    assert await both == pytest.approx(1.0)
    assert pacer.stats()["tg:bot"].grants == 1


async def test_wide_bucket_keeps_flowing_while_one_chat_waits(clock: VirtualClock) -> None:
    """A waiter blocked by its own chat does not hold up other chats sharing the bot bucket."""
    pacer = make_pacer(clock)
    chats = [PaceScope(f"tg:chat:{i}", rate=1.0, burst=1.0) for i in range(20)]
    await pacer.acquire([chats[0], BOT], Priority.FINAL)
    slow = asyncio.ensure_future(grant_time(pacer, clock, [chats[0], BOT], Priority.FINAL))
    await asyncio.sleep(0)
    others = [await grant_time(pacer, clock, [chat, BOT], Priority.EDIT) for chat in chats[1:]]
    assert max(others) < 1.0
    assert await slow == pytest.approx(1.0)


async def test_multi_scope_waiter_is_not_starved_by_single_scope_traffic(
    clock: VirtualClock,
) -> None:
    """Both buckets are hogged by single-scope waiters; the head's claim still gets W through."""
    pacer = make_pacer(clock)
    narrow = PaceScope("narrow", rate=2.0, burst=1.0)
    wide = PaceScope("wide", rate=2.9, burst=1.0)
    stop = asyncio.Event()

    async def hog(scope: PaceScope) -> None:  # takes every token of one bucket it can get
        while not stop.is_set():
            await pacer.acquire([scope], Priority.EDIT)

    hogs = [asyncio.ensure_future(hog(scope)) for scope in (narrow, wide, narrow, wide)]
    await asyncio.sleep(1.1)
    started = clock.now()
    got = await grant_time(pacer, clock, [narrow, wide], Priority.EDIT)
    stop.set()
    for task in hogs:
        task.cancel()
    await asyncio.gather(*hogs, return_exceptions=True)
    assert got - started <= 2.0


async def test_cancelled_waiter_takes_nothing_and_blocks_no_one(clock: VirtualClock) -> None:
    pacer = make_pacer(clock)
    scope = PaceScope("s", rate=1.0, burst=1.0)
    await pacer.acquire([scope], Priority.FINAL)
    final = asyncio.ensure_future(pacer.acquire([scope], Priority.FINAL))
    await asyncio.sleep(0)
    edit = asyncio.ensure_future(grant_time(pacer, clock, [scope], Priority.EDIT))
    await asyncio.sleep(0.2)
    final.cancel()
    await asyncio.gather(final, return_exceptions=True)
    assert await edit == pytest.approx(1.0)
    assert pacer.stats()["s"].grants == 2
    assert pacer.stats()["s"].waiting == 0


async def test_a_thousand_streams_share_one_bucket_in_order(clock: VirtualClock) -> None:
    pacer = make_pacer(clock)
    scope = PaceScope("busy", rate=100.0, burst=10.0)
    served: list[int] = []

    async def stream(index: int) -> None:
        await pacer.acquire([scope], Priority.FINAL)
        served.append(index)

    async with asyncio.TaskGroup() as group:
        for index in range(1000):
            group.create_task(stream(index))
    assert served == list(range(1000))  # arrival order within one priority
    assert clock.now() == pytest.approx(9.9)  # 10 at once, then 990 at 100/s
    assert clock.jumps <= 1000  # woken once per token, no polling
    stats = pacer.stats()["busy"]
    assert stats.grants == 1000 and stats.max_wait == pytest.approx(9.9)


async def test_a_thousand_chats_with_a_shared_bot_bucket(clock: VirtualClock) -> None:
    pacer = make_pacer(clock)
    chats = [PaceScope(f"chat{i}", rate=1.0, burst=1.0) for i in range(1000)]
    grants: list[float] = []

    async def stream(chat: PaceScope) -> None:
        for _ in range(3):
            await pacer.acquire([chat, BOT], Priority.EDIT)
            grants.append(clock.now())

    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.TaskGroup() as group:
        for chat in chats:
            group.create_task(stream(chat))
    assert len(grants) == 3000
    # the bot bucket (30/s) is the bottleneck: 3000 grants need about 100 s
    assert clock.now() - started == pytest.approx(3000 / 30, rel=0.05)
    for window_start in range(0, 100, 5):
        in_window = [t for t in grants if window_start <= t < window_start + 5]
        assert len(in_window) <= 30 * 5 + 30


# -- idle buckets are dropped ---------------------------------------------------------------------


async def test_one_off_scopes_do_not_pile_up(clock: VirtualClock) -> None:
    pacer = make_pacer(clock)
    most = 0
    for index in range(10_000):  # a new chat every 10 ms, each answered once
        await pacer.acquire([PaceScope(f"chat{index}", rate=1.0, burst=2.0), BOT], Priority.FINAL)
        if index % 50 == 0:
            most = max(most, len(pacer.stats()))
        await clock.sleep(0.01)
    # only the chats of the last second are not full again yet, plus up to 256 idle ones
    assert most <= pacer.max_idle_buckets + 100, most
    await clock.sleep(60.0)
    small = Pacer(clock, StreamPolicy(), max_idle_buckets=8)
    for index in range(10_000):
        await small.acquire([PaceScope(f"once{index}", rate=1.0)], Priority.EDIT)
    assert len(small.stats()) == 10_000  # all at one instant: none has refilled yet
    await clock.sleep(5.0)
    for _ in range(10_000):
        await small.acquire([], Priority.EDIT)
    assert len(small.stats()) == 0  # a sweep found them all full, idle and unpaused


async def test_busy_waiting_and_paused_buckets_are_kept(clock: VirtualClock) -> None:
    pacer = Pacer(clock, StreamPolicy(pause_jitter=0.0), max_idle_buckets=0)
    slow = PaceScope("slow", rate=0.1, burst=1.0)
    paused = PaceScope("paused", rate=10.0, burst=1.0)
    await pacer.acquire([slow], Priority.FINAL)
    waiter = asyncio.ensure_future(grant_time(pacer, clock, [slow], Priority.FINAL))
    await asyncio.sleep(0)
    pacer.pause([paused], 30.0)
    for index in range(50):  # every call sweeps: idle one-offs go, the others stay
        await pacer.acquire([PaceScope(f"x{index}", rate=100.0)], Priority.FINAL)
        await clock.sleep(0.05)
        assert {"slow", "paused"} <= set(pacer.stats())
    assert await waiter == pytest.approx(10.0)
    assert await grant_time(pacer, clock, [paused], Priority.FINAL) >= 30.0
    assert pacer.stats()["slow"].grants == 2


async def run_workload(pacer: Pacer, clock: VirtualClock, seed: int) -> list[tuple[str, float]]:
    """Streams on shared and one-off scopes with pauses; (who, grant time since the start)."""
    rng = random.Random(seed)
    start = clock.now()
    grants: list[tuple[str, float]] = []
    shared = [
        PaceScope(f"ws{i}", rate=rng.uniform(0.5, 5.0), burst=rng.choice([1, 2, 5]))
        for i in range(3)
    ]

    async def stream(name: str, plan: list[tuple[float, list[PaceScope], Priority, float]]) -> None:
        for delay, scopes, priority, pause in plan:
            await clock.sleep(delay)
            await pacer.acquire(scopes, priority)
            grants.append((name, round(clock.now() - start, 6)))
            if pause:
                pacer.pause(scopes, pause)

    async with asyncio.TaskGroup() as group:
        for index in range(40):
            # two streams may share a chat key with other limits: a bucket whose burst changes
            # must behave the same whether it was kept or dropped while idle
            own = PaceScope(
                f"chat{index % 25}", rate=rng.uniform(0.2, 3.0), burst=rng.choice([1, 3])
            )
            plan = [
                (
                    rng.choice([0.0, 0.01, 0.3, 2.0, 8.0]),
                    rng.sample([own, *shared], rng.randint(1, 3)),
                    rng.choice(list(Priority)),
                    2.0 if rng.random() < 0.05 else 0.0,
                )
                for _ in range(rng.randint(1, 12))
            ]
            group.create_task(stream(f"s{index}", plan))
    return grants


@pytest.mark.parametrize("seed", range(12))
async def test_dropping_idle_buckets_changes_no_grant(clock: VirtualClock, seed: int) -> None:
    policy = StreamPolicy(pause_jitter=0.3)
    keeping = Pacer(clock, policy, rng=random.Random(seed), max_idle_buckets=10**9)  # no sweeps
    kept = await run_workload(keeping, clock, seed)
    await clock.sleep(100.0)
    dropping = Pacer(clock, policy, rng=random.Random(seed), max_idle_buckets=0)  # many sweeps
    swept = 0
    sweep = dropping._maybe_sweep

    def counting_sweep() -> None:
        nonlocal swept
        before = len(dropping._buckets)
        sweep()
        swept += before - len(dropping._buckets)

    dropping._maybe_sweep = counting_sweep  # type: ignore[method-assign]
    assert await run_workload(dropping, clock, seed) == kept
    assert swept > 0  # buckets were dropped (and created again) along the way


async def test_a_full_bucket_stays_full_when_its_burst_changes(clock: VirtualClock) -> None:
    """As if it had been dropped while idle and created again with the new limits."""
    pacer = make_pacer(clock)
    await pacer.acquire([PaceScope("s", rate=1.0, burst=1.0)], Priority.FINAL)
    await clock.sleep(5.0)  # full again
    wider = PaceScope("s", rate=1.0, burst=3.0)
    times = [await grant_time(pacer, clock, [wider], Priority.FINAL) for _ in range(4)]
    assert [t - 5.0 for t in times] == pytest.approx([0, 0, 0, 1.0])
    widest = PaceScope("s", rate=1.0, burst=5.0)  # not full (empty): it keeps what it has
    assert await grant_time(pacer, clock, [widest], Priority.FINAL) == pytest.approx(7.0)


async def test_a_refunded_token_serves_the_next_waiter_at_once(clock: VirtualClock) -> None:
    pacer = make_pacer(clock)
    scope = PaceScope("stream-start", rate=1 / 3, burst=1.0)  # Slack's ~20/min
    await pacer.acquire([scope], Priority.FIRST)
    waiter = asyncio.ensure_future(grant_time(pacer, clock, [scope], Priority.FINAL))
    await clock.sleep(0.5)
    assert not waiter.done()
    pacer.refund([scope])  # the first grant's write was dropped
    assert await waiter == pytest.approx(0.5)
    pacer.refund([scope])
    pacer.refund([scope])  # never more than the burst
    assert pacer.stats()["stream-start"].tokens == pytest.approx(1.0)


async def test_aliased_scopes_share_one_bucket_and_its_priorities(clock: VirtualClock) -> None:
    pacer = make_pacer(clock)
    create = PaceScope("ch:create", rate=1.0, burst=1.0)
    edit = PaceScope("ch:edit", rate=1.0, burst=1.0)
    pacer.alias(create.key, "shared")
    pacer.alias(edit.key, "shared")
    assert pacer.bucket_key(create.key) == "shared" and pacer.bucket_key("other") == "other"
    await pacer.acquire([edit], Priority.EDIT)  # empties the shared bucket for both
    order: list[tuple[str, float]] = []

    async def want(name: str, scope: PaceScope, priority: Priority) -> None:
        await pacer.acquire([scope], priority)
        order.append((name, clock.now()))

    async with asyncio.TaskGroup() as group:
        for name, scope, priority in [
            ("edit1", edit, Priority.EDIT),
            ("edit2", edit, Priority.EDIT),
            ("first", create, Priority.FIRST),
            ("final", edit, Priority.FINAL),
        ]:
            group.create_task(want(name, scope, priority))
            await asyncio.sleep(0)
    # one token per second for both routes together, creates and finals before edits
    assert order == [("final", 1.0), ("first", 2.0), ("edit1", 3.0), ("edit2", 4.0)]
    assert set(pacer.stats()) == {"shared"}
    pacer.alias(create.key, create.key)  # back to its own bucket
    assert pacer.bucket_key(create.key) == create.key


async def test_learned_rate_overrides_the_scopes_own(clock: VirtualClock) -> None:
    pacer = make_pacer(clock)
    scope = PaceScope("s", rate=0.5, burst=1.0)
    pacer.learn("s", rate=2.0, burst=1.0)  # before the bucket exists: used when it is made
    times = [await grant_time(pacer, clock, [scope], Priority.FINAL) for _ in range(4)]
    assert times == pytest.approx([0, 0.5, 1.0, 1.5])
    pacer.learn("s", rate=0.25, burst=1.0)
    assert await grant_time(pacer, clock, [scope], Priority.FINAL) == pytest.approx(5.5)
    assert pacer.stats()["s"].rate == 0.25


async def test_learned_remaining_lowers_tokens_and_zero_holds_until_reset(
    clock: VirtualClock,
) -> None:
    pacer = make_pacer(clock)
    scope = PaceScope("s", rate=1.0, burst=3.0)
    await pacer.acquire([scope], Priority.FINAL)
    pacer.learn("s", rate=1.0, burst=3.0, remaining=1)  # someone else used the budget too
    assert await grant_time(pacer, clock, [scope], Priority.FINAL) == 0
    pacer.learn("s", rate=1.0, burst=3.0, remaining=0, reset_after=4.0)
    waiter = asyncio.ensure_future(grant_time(pacer, clock, [scope], Priority.FINAL))
    # a token would be back after 1 s, but the platform said nothing is left for 4 s
    assert await waiter == pytest.approx(4.0)
    stats = pacer.stats()["s"]
    assert stats.pauses == 1 and stats.paused_seconds == pytest.approx(4.0)


async def test_learned_shapes_and_aliases_outlive_an_idle_bucket(clock: VirtualClock) -> None:
    pacer = Pacer(clock, StreamPolicy(pause_jitter=0.0), max_idle_buckets=1)
    scope = PaceScope("route", rate=0.5, burst=1.0)
    pacer.alias("route", "bucket")
    pacer.learn("bucket", rate=4.0, burst=2.0)
    await pacer.acquire([scope], Priority.FINAL)
    for n in range(5):  # other one-off scopes sweep the idle bucket out
        await clock.sleep(10)
        await pacer.acquire([PaceScope(f"x{n}", rate=1.0)], Priority.FINAL)
    times = [await grant_time(pacer, clock, [scope], Priority.FINAL) for _ in range(3)]
    assert [t - times[0] for t in times] == pytest.approx([0, 0, 0.25])
    assert pacer.stats()["bucket"].burst == 2.0


def test_learning_an_invalid_rate_is_refused() -> None:
    pacer = Pacer(VirtualClock())
    with pytest.raises(ValueError, match="rate > 0"):
        pacer.learn("b", rate=0.0, burst=1.0)


async def test_an_alias_moves_the_waiters_of_its_scope(clock: VirtualClock) -> None:
    pacer = make_pacer(clock)
    create = PaceScope("ch:create", rate=1.0, burst=1.0)
    edit = PaceScope("ch:edit", rate=1.0, burst=1.0)
    pacer.alias(create.key, "default")
    pacer.alias(edit.key, "default")
    await pacer.acquire([create], Priority.FIRST)  # "default" is empty now
    order: list[tuple[str, float]] = []

    async def want(name: str, scope: PaceScope, priority: Priority) -> None:
        await pacer.acquire([scope], priority)
        order.append((name, clock.now()))

    tasks = [
        asyncio.ensure_future(want(name, scope, priority))
        for name, scope, priority in [
            ("c1", create, Priority.FIRST),
            ("e1", edit, Priority.EDIT),
            ("c2", create, Priority.FIRST),
            ("e2", edit, Priority.EDIT),
        ]
    ]
    await asyncio.sleep(0)
    # the platform says edits have a bucket of their own, twice as fast: the waiting edits
    # move there, starting from the tokens the shared bucket had (none)
    pacer.learn("edits", rate=2.0, burst=1.0)
    pacer.alias(edit.key, "edits")
    await asyncio.gather(*tasks)
    assert sorted(order, key=lambda item: (item[1], item[0])) == [
        ("e1", 0.5),
        ("c1", 1.0),
        ("e2", 1.0),
        ("c2", 2.0),
    ]
    assert pacer.stats()["edits"].grants == 2 and pacer.stats()["default"].grants == 3
