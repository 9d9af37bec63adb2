"""Shared helpers of the benchmarks: the machine, statistics, the fake server, a counting sink."""

from __future__ import annotations

import asyncio
import cProfile
import os
import platform
import pstats
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import asyncpg

from core.streaming import PaceScope, SinkLimits

ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or the platform's processor string)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """One line describing where the numbers were taken."""
    return (
        f"machine: nproc={os.cpu_count()}, CPU {cpu_model()}, {platform.machine()}, "
        f"{platform.platform()}; Python {platform.python_version()}"
    )


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-quantile (0..1) by linear interpolation between the closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def fake_server(*extra_args: str) -> Iterator[str]:
    """Run `tests.fakes.openai_server` in its own process (its CPU is not ours); yield base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai_server", "--port", str(port), *extra_args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # the banner, or "" if the process died
        if "fake OpenAI server at" not in line:
            rest = line + (process.stdout.read() if process.poll() is not None else "")
            raise RuntimeError(f"the fake server did not start: {rest.strip()!r}")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def realistic_limits(min_edit_interval: float = 0.5, rate: float = 1000.0) -> SinkLimits:
    """A platform target: 4,000 characters a message, one generous edit scope."""
    scope = PaceScope("bench:chat", rate=rate, burst=max(1.0, rate / 10))
    return SinkLimits(
        max_length=4000,
        post_scopes=(scope,),
        edit_scopes=(scope,),
        typing_scopes=(PaceScope("bench:typing", rate=rate, burst=max(1.0, rate / 10)),),
        min_edit_interval=min_edit_interval,
    )


class CountingSink:
    """An in-memory `ReplySink` that only counts writes (no latency unless asked).

    `first_post_at` is the `time.perf_counter()` of the first `post` that carried text.
    """

    def __init__(self, limits: SinkLimits, latency: float = 0.0) -> None:
        self._limits = limits
        self._latency = latency
        self.posts = 0
        self.edits = 0
        self.finals = 0
        self.typing = 0
        self.chars = 0
        self.first_post_at: float | None = None

    @property
    def limits(self) -> SinkLimits:
        return self._limits

    def describe(self) -> dict[str, str]:
        """Like every platform's sink: its answers are saved as they stream (crash recovery)."""
        return {"sink": "counting"}

    async def show_typing(self) -> None:
        self.typing += 1

    async def post(self, text: str) -> str:
        if self.first_post_at is None and text.strip():
            self.first_post_at = time.perf_counter()
        await self._wait()
        self.posts += 1
        self.chars += len(text)
        return f"m{self.posts}"

    async def edit(self, message_id: str, text: str) -> None:
        await self._wait()
        self.edits += 1
        self.chars += len(text)

    async def finalize(self, message_id: str, text: str) -> None:
        await self._wait()
        self.finals += 1
        self.chars += len(text)

    async def _wait(self) -> None:
        if self._latency > 0:
            await asyncio.sleep(self._latency)

    @property
    def writes(self) -> int:
        return self.posts + self.edits + self.finals


def profile_report(profile: cProfile.Profile, top: int) -> None:
    """Own time by area and the top functions; time blocked in the selector is left out."""
    raw = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    rows = {key: entry for key, entry in raw.items() if not _idle(key[2])}
    total = sum(entry[2] for entry in rows.values()) or 1e-9
    groups: dict[str, float] = {}
    for (filename, _, function), entry in rows.items():
        name = _group(filename, function)
        groups[name] = groups.get(name, 0.0) + entry[2]
    print(f"    own time by area (of {total * 1e3:.0f} ms profiled, waiting in epoll left out):")
    for name, seconds in sorted(groups.items(), key=lambda item: -item[1])[:14]:
        print(f"      {seconds / total:6.1%}  {name}")
    print(f"    top {top} functions by own time (tottime; cumtime):")
    for (filename, line, function), entry in sorted(rows.items(), key=lambda item: -item[1][2])[
        :top
    ]:
        calls, tottime, cumtime = entry[1], entry[2], entry[3]
        print(
            f"      {tottime / total:6.1%} {tottime * 1e3:7.1f} ms; {cumtime * 1e3:7.1f} ms"
            f"  {calls:>7} calls  {_short(filename)}:{line}({function})"
        )


def function_costs(profile: cProfile.Profile, wanted: Sequence[tuple[str, str]], per: int) -> None:
    """Cumulative time and calls of chosen functions (file suffix, name), divided by `per`."""
    raw = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    for suffix, name in wanted:
        entries = [
            entry
            for (filename, _, function), entry in raw.items()
            if filename.endswith(suffix) and function == name
        ]
        calls = sum(entry[1] for entry in entries)
        cumulative = sum(entry[3] for entry in entries)
        print(f"      {cumulative / per * 1e3:7.2f} ms {calls / per:7.1f} calls  {suffix}:{name}")
    print("      (a coroutine counts one call per resumption; GC pauses are charged to the")
    print("      function that happens to run)")


def _idle(function: str) -> bool:
    return "select.epoll" in function or "select.select" in function


def _short(filename: str) -> str:
    for marker in ("site-packages/", f"{ROOT}/", "/lib/python3.11/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def _group(filename: str, function: str) -> str:
    short = _short(filename)
    if filename.startswith("~") or short.startswith("<"):
        return f"builtins ({function.split(' ')[-1].strip('>')[:40]})"
    parts = Path(short).parts
    if not parts:
        return short
    if parts[0] in ("core", "bench", "bots", "tests"):
        return "/".join(parts[:3])
    return parts[0].removesuffix(".py")


ADMIN_DSN = os.environ.get(
    "THREADLINE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@asynccontextmanager
async def scratch_database(kind: str) -> AsyncIterator[str]:
    """A scratch database URL of `kind` ("sqlite" or "postgres"), removed afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            yield f"sqlite:///{directory}/bench.db"
        return
    name = f"threadline_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(ADMIN_DSN, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        base = ADMIN_DSN.rpartition("/")[0].replace("postgresql://", "postgresql+asyncpg://", 1)
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(ADMIN_DSN, timeout=10)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
