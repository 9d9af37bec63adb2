"""Background upkeep while channels run: forget processed event ids once retries are over."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from core.errors import StoreError
from core.store import HistoryStore

log = logging.getLogger(__name__)

EVENT_RETENTION = timedelta(days=3)  # longer than any platform redelivers (Telegram keeps 24 h)
PRUNE_INTERVAL = 3600.0


async def prune_events_once(store: HistoryStore, keep: timedelta = EVENT_RETENTION) -> int:
    """Delete de-duplication records older than `keep`; a store failure is logged, not raised."""
    try:
        removed = await store.prune_events(keep)
    except StoreError as exc:
        log.warning("could not prune processed events: %s", exc)
        return 0
    if removed:
        log.info("pruned %d processed event ids", removed)
    return removed


async def prune_events_forever(store: HistoryStore, interval: float = PRUNE_INTERVAL) -> None:
    """Prune now and then every `interval` seconds until cancelled."""
    while True:
        await prune_events_once(store)
        await asyncio.sleep(interval)
