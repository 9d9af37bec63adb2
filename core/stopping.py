"""Answers in progress, by conversation, so that a user (or an admin) can stop one."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from core.conversation import ConversationKey

STOPPED_NOTE = "⏹️ _Stopped._"


class StopResult(enum.Enum):
    """What a stop request did."""

    STOPPED = "stopped"
    NOTHING = "nothing"  # no answer was streaming there
    NOT_ALLOWED = "not allowed"  # only the asker (or a platform's own control) may stop it


STOP_REPLIES = {
    StopResult.STOPPED: "Stopped.",
    StopResult.NOTHING: "Nothing is being answered here.",
    StopResult.NOT_ALLOWED: "Only the person who asked can stop this answer.",
}


@dataclass(slots=True)
class StopSignal:
    """Set when someone asked the answer to stop; `by` says who (a platform user id)."""

    key: ConversationKey
    asker: str | None = None
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
    def running(self, key: ConversationKey, asker: str | None = None) -> Iterator[StopSignal]:
        """Register an answer in `key`, asked by `asker`, for as long as it streams."""
        signal = StopSignal(key, asker)
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

    def stop_for(self, key: ConversationKey, requester: str) -> StopResult:
        """A user's `/stop` sent in `key`: that conversation's answer, else the answers this
        user asked for in the same chat; only the asker may stop an answer."""
        matching = list(self._signals.get(key, ()))
        if not matching:
            matching = [
                s
                for k, signals in self._signals.items()
                if k.chat == key.chat
                for s in signals
                if s.asker == requester
            ]
        matching = [s for s in matching if not s.requested]
        if not matching:
            return StopResult.NOTHING
        allowed = [s for s in matching if s.asker in (None, requester)]
        if not allowed:
            return StopResult.NOT_ALLOWED
        for signal in allowed:
            signal.by = requester
            signal.event.set()
        return StopResult.STOPPED

    def __len__(self) -> int:
        return sum(len(v) for v in self._signals.values())
