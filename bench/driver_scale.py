"""Stream driver at scale: lag and cost of 1,000 streams, staleness of 200 on one shared budget.

Run: `.venv/bin/python -m bench.driver_scale [--runs N] [--quick]`. Prints numbers, asserts
nothing. Part (a) runs in real time on the SystemClock; part (b) on a VirtualClock.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform as host
import random
import resource
import statistics
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass, field

from core.clock import SystemClock
from core.streaming import (
    Pacer,
    PaceScope,
    ReplyStream,
    SinkLimits,
    StreamDriver,
    StreamPolicy,
    StreamResult,
)
from tests.fakes.budget_sink import Budget, Platform
from tests.fakes.virtual_clock import VirtualClock

WORDS = ("stream", "token", "budget", "answer", "slack", "pace", "edit", "final", "model")
SAMPLE_STEP = 0.5


def delta(rng: random.Random) -> str:
    """One model delta; never ends in whitespace, so every prefix is shown as is."""
    return " " + rng.choice(WORDS)


def quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# -- (a) 1,000 streams in real time ---------------------------------------------------------


@dataclass
class Trace:
    """What one stream saw: (time, source length) of every update and every finished write."""

    updates: list[tuple[float, int]] = field(default_factory=list)
    writes: list[tuple[float, int]] = field(default_factory=list)


class MemorySink:
    """An in-memory platform target with a little latency and generous budgets."""

    def __init__(self, limits: SinkLimits, trace: Trace, latency: float) -> None:
        self._limits = limits
        self._trace = trace
        self._latency = latency
        self._count = 0

    @property
    def limits(self) -> SinkLimits:
        return self._limits

    async def show_typing(self) -> None:
        await asyncio.sleep(self._latency)

    async def post(self, text: str) -> str:
        await self._write(text)
        self._count += 1
        return f"m{self._count}"

    async def edit(self, message_id: str, text: str) -> None:
        await self._write(text)

    async def finalize(self, message_id: str, text: str) -> None:
        await self._write(text)

    async def _write(self, text: str) -> None:
        await asyncio.sleep(self._latency)
        self._trace.writes.append((time.monotonic(), len(text)))


def lags(trace: Trace) -> list[tuple[float, float]]:
    """(update time, seconds until a finished write carried that update)."""
    result: list[tuple[float, float]] = []
    writes = sorted(trace.writes)
    index = 0
    for at, length in trace.updates:
        while index < len(writes) and (writes[index][1] < length or writes[index][0] < at):
            index += 1
        if index < len(writes):
            result.append((at, writes[index][0] - at))
    return result


@dataclass
class ScaleRun:
    """One run of part (a)."""

    wall: float
    cpu: float
    updates: int
    writes: int
    rss_growth_per_stream: float
    lag_p50_by_window: list[float]
    lag_p95_by_window: list[float]
    loop_lag_p95: float


async def scale_run(streams: int, seconds: float, rate: float, min_edit: float) -> ScaleRun:
    clock = SystemClock()
    pacer = Pacer(clock, StreamPolicy())
    driver = StreamDriver(pacer)
    bot = PaceScope("bot", rate=5000.0, burst=500.0)
    traces = [Trace() for _ in range(streams)]
    gc.collect()
    rss_before = rss_bytes()
    rss_peak = rss_before
    loop_lag: list[float] = []
    done = asyncio.Event()

    async def heartbeat() -> None:
        nonlocal rss_peak
        while not done.is_set():
            before = time.monotonic()
            await asyncio.sleep(0.1)
            loop_lag.append(time.monotonic() - before - 0.1)
            rss_peak = max(rss_peak, rss_bytes())

    async def answer(index: int) -> None:
        rng = random.Random(index)
        limits = SinkLimits(
            max_length=4000,
            post_scopes=(PaceScope(f"chat{index}:post", 1.0), bot),
            edit_scopes=(PaceScope(f"chat{index}:edit", 2.0, 2.0), bot),
            min_edit_interval=min_edit,
        )
        trace = traces[index]
        stream: ReplyStream = driver.open(MemorySink(limits, trace, latency=0.02))
        await asyncio.sleep(rng.uniform(0, 1 / rate))
        await stream.start()
        text = ""
        for _ in range(int(seconds * rate)):
            text += delta(rng)
            stream.update(text)
            trace.updates.append((time.monotonic(), len(text)))
            await asyncio.sleep(1 / rate)
        await stream.finish(text)

    usage_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    beat = asyncio.create_task(heartbeat())
    async with asyncio.TaskGroup() as group:
        for index in range(streams):
            group.create_task(answer(index))
    wall = time.monotonic() - started
    done.set()
    await beat
    usage_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage_after.ru_utime - usage_before.ru_utime) + (
        usage_after.ru_stime - usage_before.ru_stime
    )
    windows: dict[int, list[float]] = {}
    for trace in traces:
        for at, lag in lags(trace):
            windows.setdefault(int((at - started) // 2), []).append(lag)
    return ScaleRun(
        wall=wall,
        cpu=cpu,
        updates=sum(len(trace.updates) for trace in traces),
        writes=sum(len(trace.writes) for trace in traces),
        rss_growth_per_stream=(rss_peak - rss_before) / streams,
        lag_p50_by_window=[quantile(windows[w], 0.5) for w in sorted(windows)],
        lag_p95_by_window=[quantile(windows[w], 0.95) for w in sorted(windows)],
        loop_lag_p95=quantile(loop_lag, 0.95),
    )


async def traced_memory(streams: int) -> float:
    """Python heap bytes per live stream (mid-answer: ~600 chars shown), via tracemalloc."""
    clock = SystemClock()
    driver = StreamDriver(Pacer(clock, StreamPolicy()))
    gc.collect()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    live: list[ReplyStream] = []
    for index in range(streams):
        limits = SinkLimits(
            max_length=4000,
            post_scopes=(PaceScope(f"chat{index}:post", 1.0),),
            edit_scopes=(PaceScope(f"chat{index}:edit", 2.0, 2.0),),
            min_edit_interval=0.5,
        )
        stream = driver.open(MemorySink(limits, Trace(), latency=0.0))
        await stream.start()
        stream.update("word " * 120 + "end")
        live.append(stream)
    await asyncio.sleep(0.3)
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    for stream in live:
        await stream.abort()
    return (current - base) / streams


# -- (b) 200 streams on one 50/min budget, virtual time -----------------------------------------


@dataclass
class SharedRun:
    """One run of part (b)."""

    virtual_seconds: float
    rate_limited: int
    complete: bool
    delivered: int
    edits: int
    finals: int
    stale_mean: float
    stale_ideal_budget: float
    stale_ideal_pacer: float
    final_latency_p50: float
    final_latency_max: float
    budget_used: float
    pacer_used: float


async def shared_budget_run(streams: int, seed: int) -> SharedRun:
    with VirtualClock.install() as clock:
        budget = Budget(50, 60.0)
        edit_scope = PaceScope("T1:chat.update", rate=40 / 60, burst=5.0)
        budgets = {"T1:chat.update": budget}
        budgets.update({f"T1:C{i}:post": Budget(1, 1.0) for i in range(streams)})
        platform = Platform(clock, budgets, latency=0.1)
        driver = StreamDriver(Pacer(clock, StreamPolicy(), rng=random.Random(seed)))
        spans: list[tuple[float, float]] = []  # (first update, finish called) per stream
        updates: list[list[tuple[float, int]]] = [[] for _ in range(streams)]
        finals = [""] * streams
        results: list[tuple[float, StreamResult]] = []
        sinks = [
            platform.sink(
                SinkLimits(
                    max_length=4000,
                    post_scopes=(PaceScope(f"T1:C{index}:post", 1.0, 1.0),),
                    edit_scopes=(edit_scope,),
                    min_edit_interval=1.0,
                ),
                name=f"s{index}",
            )
            for index in range(streams)
        ]

        async def answer(index: int) -> None:
            rng = random.Random(seed * 1000 + index)
            await clock.sleep(rng.uniform(0, 120))
            stream = driver.open(sinks[index])
            await stream.start()
            text = ""
            first = clock.now()
            for _ in range(int(rng.uniform(5, 20) * 20)):
                text += delta(rng)
                stream.update(text)
                updates[index].append((clock.now(), len(text)))
                await clock.sleep(0.05)
            spans.append((first, clock.now()))
            finals[index] = text
            results.append((clock.now(), await stream.finish(text)))

        async with asyncio.TaskGroup() as group:
            for index in range(streams):
                group.create_task(answer(index))
        end = clock.now()

    written: dict[str, list[tuple[float, int]]] = {}
    for record in platform.records:
        if record.outcome == "ok" and record.text:
            written.setdefault(record.sink, []).append((record.done_at, len(record.text)))
    measured: list[float] = []
    ideal: list[float] = []
    ideal_pacer: list[float] = []
    budget_rate = budget.limit / budget.window
    for index, sink in enumerate(sinks):
        history = updates[index]
        first, last = history[0][0], history[-1][0]
        at = first + SAMPLE_STEP
        while at <= last:
            active = sum(1 for start, stop in spans if start <= at <= stop)
            shown = max((n for done, n in written.get(sink.name, []) if done <= at), default=0)
            produced = next((t for t, n in history if n >= shown), first) if shown else first
            measured.append(at - produced)
            ideal.append(min(at - first, active / (2 * budget_rate)))
            ideal_pacer.append(min(at - first, active / (2 * edit_scope.rate)))
            at += SAMPLE_STEP
    latencies = [r.final_visible_at - at for at, r in results if r.final_visible_at is not None]
    kinds = [r.kind.value for r in platform.records if r.outcome == "ok"]
    update_writes = kinds.count("edit") + kinds.count("final")
    return SharedRun(
        virtual_seconds=end,
        rate_limited=platform.rate_limited,
        complete=all(
            sink.texts() == [text] and sink.all_final()
            for sink, text in zip(sinks, finals, strict=True)
        ),
        delivered=sum(1 for _, r in results if r.delivered),
        edits=kinds.count("edit"),
        finals=kinds.count("final"),
        stale_mean=statistics.fmean(measured),
        stale_ideal_budget=statistics.fmean(ideal),
        stale_ideal_pacer=statistics.fmean(ideal_pacer),
        final_latency_p50=quantile(latencies, 0.5),
        final_latency_max=max(latencies),
        budget_used=update_writes / (budget.limit * end / budget.window),
        pacer_used=update_writes / (edit_scope.burst + edit_scope.rate * end),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="1 run, 200 streams, 4 s")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.streams, args.seconds = 1, 200, 4.0
    print(f"machine: nproc={os.cpu_count()} python={host.python_version()} ({host.machine()})")

    print(
        f"\n(a) {args.streams} streams x 20 deltas/s x {args.seconds:.0f} s, SystemClock,"
        " min_edit_interval 0.5 s, sink latency 20 ms, generous budgets"
    )
    runs = [asyncio.run(scale_run(args.streams, args.seconds, 20.0, 0.5)) for _ in range(args.runs)]
    for number, run in enumerate(runs, 1):
        p50 = " ".join(f"{v:.2f}" for v in run.lag_p50_by_window)
        p95 = " ".join(f"{v:.2f}" for v in run.lag_p95_by_window)
        print(f"  run {number}: update->write lag (s) per 2 s window, p50: {p50}")
        print(f"         p95: {p95}")
    wall = statistics.median(run.wall for run in runs)
    cpu = statistics.median(run.cpu for run in runs)
    print(
        f"  medians over {len(runs)} runs: wall {wall:.1f} s, CPU {cpu:.1f} s"
        f" ({cpu / wall:.0%} of one core),"
        f" updates {statistics.median(run.updates for run in runs):.0f},"
        f" writes {statistics.median(run.writes for run in runs):.0f},"
        f" event-loop lag p95 {statistics.median(run.loop_lag_p95 for run in runs) * 1e3:.0f} ms"
    )
    per_stream_second = cpu / (args.streams * args.seconds) * 1e3
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"  CPU per stream-second {per_stream_second:.2f} ms (benchmark producers included);"
        f" RSS growth per stream in the first run {runs[0].rss_growth_per_stream / 1024:.1f} KiB"
        f" (process max RSS {max_rss:.0f} MiB)"
    )
    heap = asyncio.run(traced_memory(1000)) / 1024
    print(f"  traced Python heap per live stream (tracemalloc, 600-char text): {heap:.1f} KiB")

    streams_b = 200
    print(
        f"\n(b) {streams_b} streams starting over 120 s, one chat.update budget of 50/min"
        " (pacer 40/min, burst 5), VirtualClock, 20 deltas/s for 5-20 s each"
    )
    shared = [asyncio.run(shared_budget_run(streams_b, seed)) for seed in range(max(3, args.runs))]
    for attribute, label in [
        ("rate_limited", "budget violations (429s)"),
        ("delivered", "answers delivered"),
        ("edits", "intermediate edits"),
        ("finals", "final writes"),
        ("virtual_seconds", "virtual seconds until the last final"),
        ("stale_mean", "mean visible staleness, s"),
        ("stale_ideal_budget", "  minimum the 50/min budget allows, s"),
        ("stale_ideal_pacer", "  minimum at the pacer's 40/min, s"),
        ("final_latency_p50", "finish -> final visible p50, s"),
        ("final_latency_max", "finish -> final visible max, s"),
        ("budget_used", "chat.update writes / what 50/min allows over the run"),
        ("pacer_used", "chat.update writes / what 40/min + burst allows over the run"),
    ]:
        value = statistics.median(float(getattr(run, attribute)) for run in shared)
        print(f"  {label}: median of {len(shared)} runs {value:.2f}")
    print(f"  every final text complete in every run: {all(run.complete for run in shared)}")
    print(
        "  staleness = time since the visible text was the model's latest (since its first"
        " token while nothing is shown), sampled every 0.5 s while a stream produces;"
        " minimum = min(that age, active streams / (2 x budget rate)), i.e. a perfect"
        " round-robin of the whole budget over the active streams, ignoring finals."
    )


if __name__ == "__main__":
    main()
