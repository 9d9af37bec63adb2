"""Per-key FIFO queues so messages of one chat or conversation are handled in arrival order."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from types import TracebackType


class Ticket:
    """A place in one key's queue, taken when reserved; `async with` waits for the turn."""

    def __init__(self, locks: KeyedLocks, key: Hashable, turn: asyncio.Future[None]) -> None:
        self._locks = locks
        self._key = key
        self._turn = turn

    async def __aenter__(self) -> None:
        try:
            await asyncio.shield(self._turn)
        except asyncio.CancelledError:
            self._locks._leave(self._key, self._turn)
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.leave()

    def leave(self) -> None:
        """Give the place up (done or abandoned); leaving twice does nothing."""
        self._locks._leave(self._key, self._turn)


class KeyedLocks:
    """One FIFO queue per key, created on demand and dropped when empty.

    `reserve(key)` joins the queue at once (no await), so a caller can fix its place in one
    queue while it still holds another; `hold(key)` is reserve-and-wait in one step.
    """

    def __init__(self) -> None:
        self._queues: dict[Hashable, deque[asyncio.Future[None]]] = {}

    def reserve(self, key: Hashable) -> Ticket:
        """Join `key`'s queue now; enter the returned ticket to wait for the turn."""
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._queues.setdefault(key, deque())
        if not queue:
            turn.set_result(None)
        queue.append(turn)
        return Ticket(self, key, turn)

    @asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        """Hold `key` for the duration of the block, after everyone who reserved it earlier."""
        async with self.reserve(key):
            yield

    def _leave(self, key: Hashable, turn: asyncio.Future[None]) -> None:
        """Give up a place (done or abandoned); the next waiter's turn comes if this was first."""
        queue = self._queues.get(key)
        if queue is None or turn not in queue:
            return
        was_first = queue[0] is turn
        queue.remove(turn)
        if not turn.done():
            turn.cancel()
        if not queue:
            del self._queues[key]
        elif was_first:
            queue[0].set_result(None)

    def __len__(self) -> int:
        return len(self._queues)
