"""AnswerJournal: keeps the stored copy of a streaming answer a few seconds behind the screen."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from core.conversation import ConversationKey, Role, Turn
from core.errors import StoreError
from core.store import HistoryStore
from core.streaming import ReplyStream

log = logging.getLogger(__name__)


class AnswerJournal:
    """Stores an answer as it streams, so a crash loses neither the answer nor its messages.

    The turn is stored (status streaming, its platform messages linked) as soon as the first
    message shows; after that the text, new messages and the open message's text are saved at
    most every `interval` seconds, and at least every `heartbeat` seconds (the heartbeat tells
    other processes this one is alive). `close()` stops; the caller then finishes the turn.
    """

    def __init__(
        self,
        store: HistoryStore,
        key: ConversationKey,
        *,
        owner: str,
        target: Mapping[str, Any],
        interval: float,
        heartbeat: float,
    ) -> None:
        self._store = store
        self._key = key
        self._owner = owner
        self._target = dict(target)
        self._interval = interval
        self._heartbeat = heartbeat
        self._changed = asyncio.Event()
        self._stop = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._linked: set[str] = set()
        self.turn_id: int | None = None
        self.saves = 0
        self.taken_over = False

    def track(self, stream: ReplyStream, text: Callable[[], str]) -> None:
        """Follow `stream` (its messages and open part); `text()` is the model's text so far."""
        stream.watch(self._changed.set)
        self._task = asyncio.get_running_loop().create_task(self._run(stream, text))

    async def close(self) -> None:
        """Stop saving (the answer is finished or abandoned); a save in flight completes."""
        self._closing = True
        self._stop.set()
        self._changed.set()
        task = self._task
        if task is not None:
            await asyncio.shield(task)

    async def _run(self, stream: ReplyStream, text: Callable[[], str]) -> None:
        saved_at = -math.inf
        while not (self.taken_over or self._closing):
            try:
                async with asyncio.timeout(self._heartbeat):
                    await self._changed.wait()
            except TimeoutError:
                if self.turn_id is None:
                    continue  # nothing shown yet: nothing to keep alive
            wait = saved_at + self._interval - time.monotonic()
            if self.turn_id is not None and wait > 0 and not self._closing:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._stop.wait()
            if self._closing:
                return
            self._changed.clear()
            try:
                await self._save(stream, text())
            except StoreError as exc:
                log.warning("could not save the streaming answer in %s: %s", self._key, exc)
            saved_at = time.monotonic()

    async def _save(self, stream: ReplyStream, content: str) -> None:
        message_ids = [m for m in stream.result().message_ids if m not in self._linked]
        open_message, open_text = stream.open_part()
        if self.turn_id is None:
            if not message_ids:
                return
            ids = tuple(message_ids)
            turn = Turn(role=Role.ASSISTANT, content=content, platform_message_ids=ids)
            self.turn_id = await self._store.begin_answer(
                self._key,
                turn,
                owner=self._owner,
                target=self._target,
                open_message=open_message,
                open_text=open_text,
            )
        elif not await self._store.save_answer(
            self._key,
            self.turn_id,
            owner=self._owner,
            content=content,
            message_ids=message_ids,
            open_message=open_message,
            open_text=open_text,
        ):
            log.warning("answer %s in %s was taken over elsewhere", self.turn_id, self._key)
            self.taken_over = True
            return
        self._linked.update(message_ids)
        self.saves += 1


__all__ = ["AnswerJournal"]
