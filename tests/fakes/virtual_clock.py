"""VirtualClock: a `Clock` whose time jumps ahead whenever every task of the loop is waiting.

How it works: `VirtualClock.install()` patches the *running* event loop so that `loop.time()`
returns virtual time and the selector, instead of blocking for the time until the next timer,
returns at once and moves virtual time forward by exactly that much. Every timer-based wait
(`clock.sleep`, `asyncio.sleep`, `asyncio.wait_for`, `asyncio.timeout`) therefore completes
instantly in real time, in the same order and at the same virtual times as it would for real;
time only moves when no task can run. Runs are deterministic and fast.

Use it in a test (the `clock` fixture of tests/core/streaming/conftest.py does exactly this):

    async def test_something() -> None:
        with VirtualClock.install() as clock:
            start = clock.now()
            await clock.sleep(60)           # returns at once
            assert clock.now() - start == 60

or in a script: `asyncio.run(main())` where `main` wraps its body in `VirtualClock.install()`.

Limits: real I/O and worker threads still take real time while virtual time stands still (the
loop then blocks in the real selector until they report). If every task waits on something
with no timer (a deadlock), `install` raises `VirtualDeadlock` after `deadlock_after` real seconds
instead of hanging the test.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class VirtualDeadlock(RuntimeError):
    """Every task waits, no timer is due, and nothing arrived from outside the loop."""


class VirtualClock:
    """Virtual monotonic time driven by the event loop's idle moments."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self.jumps = 0

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def advance(self, seconds: float) -> None:
        """Move time forward by hand (timers that fall due run on the next loop iteration)."""
        if seconds < 0:
            raise ValueError("virtual time only moves forward")
        self._now += seconds

    @classmethod
    @contextmanager
    def install(cls, start: float = 0.0, deadlock_after: float = 5.0) -> Iterator[VirtualClock]:
        """Run the current event loop on a new virtual clock for the duration of the block."""
        loop = asyncio.get_running_loop()
        selector: Any = getattr(loop, "_selector", None)
        if not isinstance(selector, selectors.BaseSelector):
            raise RuntimeError("VirtualClock needs a selector event loop")
        clock = cls(start)
        real_select: Callable[[float | None], list[Any]] = selector.select

        def select(timeout: float | None = None) -> list[Any]:
            if timeout is None:
                events = real_select(deadlock_after)
                if not events:
                    raise VirtualDeadlock("every task waits and no timer is scheduled")
                return events
            events = real_select(0)
            if not events and timeout > 0:
                clock._now += timeout
                clock.jumps += 1
            return events

        loop.time = clock.now  # type: ignore[method-assign]
        selector.select = select  # type: ignore[method-assign]
        try:
            yield clock
        finally:
            del loop.time
            del selector.select
