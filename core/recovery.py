"""Recovery: finishes visibly the answers a dead process left streaming, and stores them."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from core.conversation import Role, Turn, TurnStatus
from core.errors import StoreError
from core.store import HistoryStore, Orphan
from core.streaming import Reviver, StreamDriver, finish_text

log = logging.getLogger(__name__)

INTERRUPTED_NOTE = "⚠️ _The answer stopped early: the assistant was restarted._"


class Recovery:
    """Takes over answers whose writer stopped beating and closes each with a note.

    Each platform's channel registers a `Reviver` once it is connected; only answers on
    platforms with one are taken over here (another replica may serve the others). The
    message that was still growing gets the stored text of its part plus the note, so nothing
    looks as if it were still being typed; the turn is stored as partial, its messages linked,
    so a reply to it continues the conversation.
    """

    def __init__(
        self,
        store: HistoryStore,
        driver: StreamDriver,
        *,
        owner: str,
        stale_after: float,
    ) -> None:
        self._store = store
        self._driver = driver
        self._owner = owner
        self._stale_after = timedelta(seconds=stale_after)
        self._revivers: dict[str, Reviver] = {}
        self.recovered = 0

    def register(self, platform: str, reviver: Reviver) -> None:
        """Let `platform`'s answers be finished here (called once the channel is connected)."""
        self._revivers[platform] = reviver

    async def sweep(self) -> int:
        """Finish every stale answer this process can; returns how many it finished."""
        orphans = await self._store.orphans(
            owner=self._owner, stale_after=self._stale_after, platforms=sorted(self._revivers)
        )
        finished = await asyncio.gather(*(self._finish(orphan) for orphan in orphans))
        return sum(finished)

    async def run_forever(self, interval: float) -> None:
        """Sweep at start and every `interval` seconds until cancelled."""
        while True:
            try:
                await self.sweep()
            except StoreError as exc:
                log.warning("could not look for interrupted answers: %s", exc)
            await asyncio.sleep(interval)

    async def _finish(self, orphan: Orphan) -> bool:
        try:
            await self._close(orphan)
        except Exception:  # one answer's failure must not stop the others
            log.exception("could not finish the interrupted answer in %s", orphan.key)
            return False
        self.recovered += 1
        log.info("finished an answer interrupted by a restart in %s", orphan.key)
        return True

    async def _close(self, orphan: Orphan) -> None:
        reviver = self._revivers.get(orphan.key.platform)
        sink = None if reviver is None else reviver(orphan.target)
        message_ids: list[str] = []
        if sink is not None:
            stream = self._driver.open(sink)
            if orphan.open_message is not None:
                stream.adopt(orphan.open_message)
            shown = finish_text(orphan.open_text) if orphan.open_text.strip() else ""
            text = "\n\n".join(part for part in (shown, INTERRUPTED_NOTE) if part)
            result = await stream.finish(text)
            message_ids = result.message_ids
            if result.error is not None:
                log.info("interrupted answer in %s: %s", orphan.key, result.error)
        else:
            log.info("interrupted answer in %s has no place to show any more", orphan.key)
        turn = Turn(
            role=Role.ASSISTANT,
            content=orphan.content,
            status=TurnStatus.PARTIAL,
            platform_message_ids=tuple(message_ids),
        )
        await self._store.finish_answer(orphan.key, orphan.turn_id, turn)


__all__ = ["INTERRUPTED_NOTE", "Recovery"]
