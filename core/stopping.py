"""Answers in progress, by conversation, so that a user (or an admin) can stop one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from core.conversation import ConversationKey

STOPPED_NOTE = "⏹️ _Stopped._"


@dataclass(slots=True)
class StopSignal:
    """Set when someone asked the answer to stop; `by` says who (a platform user id)."""

    key: ConversationKey
    event: asyncio.Event = field(default_factory=asyncio.Event)
    by: str | None = None

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    async def wait(self) -> None:
        await self.event.wait()


class ActiveAnswers:
    """The stop signal of every answer streaming in this process."""

    def __init__(self) -> None:
        self._signals: dict[ConversationKey, list[StopSignal]] = {}

    @contextmanager
    def running(self, key: ConversationKey) -> Iterator[StopSignal]:
        """Register an answer in `key` for as long as it streams."""
        signal = StopSignal(key)
        self._signals.setdefault(key, []).append(signal)
        try:
            yield signal
        finally:
            signals = self._signals.get(key, [])
            if signal in signals:
                signals.remove(signal)
            if not signals:
                self._signals.pop(key, None)

    def stop(self, key: ConversationKey, requested_by: str | None = None) -> bool:
        """Stop the answers streaming in `key`; a running-conversation key (a DM's) stops those
        of every thread of that chat. False when none was streaming."""
        if key.is_running:
            matching = [s for k, v in self._signals.items() if k.chat == key.chat for s in v]
        else:
            matching = list(self._signals.get(key, ()))
        stopped = False
        for signal in matching:
            if not signal.requested:
                signal.by = requested_by
                signal.event.set()
                stopped = True
        return stopped

    def __len__(self) -> int:
        return sum(len(v) for v in self._signals.values())
