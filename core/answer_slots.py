"""How many answers run at once: a global cap, a per-user cap, and a fair, bounded queue."""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager


class SlotsFull(Exception):
    """The user already has as many answers waiting as the queue holds."""

    def __init__(self, waiting: int) -> None:
        super().__init__(f"{waiting} answers waiting")
        self.waiting = waiting


class AnswerSlots:
    """At most `total` answers at once and `per_user` per user; a free slot goes to the waiting
    user with the fewest answers running (ties round robin), so one user's flood never delays
    the others.
    Each user may have at most `queue` answers waiting (beyond that: `SlotsFull`)."""

    def __init__(self, total: int, per_user: int, queue: int) -> None:
        self.total = total
        self.per_user = per_user
        self.queue = queue
        self._running = 0
        self._by_user: dict[Hashable, int] = {}
        self._waiting: OrderedDict[Hashable, deque[asyncio.Future[None]]] = OrderedDict()

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return sum(len(futures) for futures in self._waiting.values())

    @asynccontextmanager
    async def slot(self, user: Hashable) -> AsyncIterator[None]:
        """Hold one answer slot for `user` while the block runs."""
        await self._acquire(user)
        try:
            yield
        finally:
            self._release(user)

    async def _acquire(self, user: Hashable) -> None:
        if not self._waiting and self._free_for(user):
            self._take(user)
            return
        queue = self._waiting.get(user)
        if queue is not None and len(queue) >= self.queue:
            raise SlotsFull(len(queue))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(user, deque()).append(future)
        self._dispatch()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release(user)  # granted just as we were cancelled: give it back
            else:
                self._forget(user, future)
            raise

    def _free_for(self, user: Hashable) -> bool:
        return self._running < self.total and self._by_user.get(user, 0) < self.per_user

    def _take(self, user: Hashable) -> None:
        self._running += 1
        self._by_user[user] = self._by_user.get(user, 0) + 1

    def _release(self, user: Hashable) -> None:
        self._running -= 1
        left = self._by_user.get(user, 1) - 1
        if left:
            self._by_user[user] = left
        else:
            self._by_user.pop(user, None)
        self._dispatch()

    def _dispatch(self) -> None:
        """Grant free slots to waiting users: the user with the fewest running answers first,
        ties in turn (a served user goes to the back)."""
        while self._running < self.total:
            ready = [user for user in self._waiting if self._free_for(user)]
            if not ready:
                return
            user = min(ready, key=lambda u: self._by_user.get(u, 0))  # stable: earliest wins
            queue = self._waiting[user]
            future = queue.popleft()
            if not queue:
                del self._waiting[user]
            else:
                self._waiting.move_to_end(user)
            if not future.cancelled():
                self._take(user)
                future.set_result(None)

    def _forget(self, user: Hashable, future: asyncio.Future[None]) -> None:
        queue = self._waiting.get(user)
        if queue is not None and future in queue:
            queue.remove(future)
            if not queue:
                del self._waiting[user]
        self._dispatch()
