"""Hands Slack requests to the core's accept step in the order they arrived, through Bolt."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

_TICKET: contextvars.ContextVar[int | None] = contextvars.ContextVar("slack_arrival", default=None)


class ArrivalOrder:
    """Keeps arrival order across Bolt's middleware, which awaits (authorize, a store lookup).

    A transport takes a ticket the moment a request arrives (`arrived`, no await before it);
    a listener calls `turn()` just before the core's accept step and waits there until every
    earlier request has passed its own accept step or finished. A request that never reaches
    a listener (ignored by Bolt) is released when its dispatch ends.
    """

    def __init__(self) -> None:
        self._next = itertools.count()
        self._open: set[int] = set()
        self._changed = asyncio.Condition()

    @asynccontextmanager
    async def arrived(self) -> AsyncIterator[int]:
        """Hold a ticket for the request being dispatched inside this block."""
        ticket = next(self._next)
        self._open.add(ticket)
        token = _TICKET.set(ticket)
        try:
            yield ticket
        finally:
            _TICKET.reset(token)
            await self._release(ticket)

    async def turn(self) -> None:
        """Wait until every request that arrived before this one is accepted or done."""
        ticket = _TICKET.get()
        if ticket is None:
            return
        async with self._changed:
            await self._changed.wait_for(lambda: min(self._open, default=ticket) >= ticket)

    async def accepted(self) -> None:
        """This request passed its accept step: later ones may go."""
        ticket = _TICKET.get()
        if ticket is not None:
            await self._release(ticket)

    async def _release(self, ticket: int) -> None:
        if ticket not in self._open:
            return
        self._open.discard(ticket)
        async with self._changed:
            self._changed.notify_all()
