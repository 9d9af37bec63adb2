"""The Channel Protocol every platform's runner satisfies, so bots runs them all alike."""

from __future__ import annotations

import asyncio
from typing import Protocol


class Channel(Protocol):
    """One platform connection: `run()` receives and answers until cancelled."""

    @property
    def ready(self) -> asyncio.Event:
        """Set once the channel is connected and answering."""
        ...

    async def run(self) -> None:
        """Connect, receive and answer until cancelled; then stop every task it started."""
        ...


__all__ = ["Channel"]
