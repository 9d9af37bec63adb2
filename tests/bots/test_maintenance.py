"""Pruning of processed event ids."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from bots.maintenance import prune_events_once
from core.store import HistoryStore


async def test_prune_forgets_old_event_ids_only(tmp_path: Path) -> None:
    store = await HistoryStore.open(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        assert await store.claim_event("slack", "Ev1")
        assert await prune_events_once(store, keep=timedelta(days=1)) == 0
        assert not await store.claim_event("slack", "Ev1")
        assert await prune_events_once(store, keep=timedelta(seconds=-1)) == 1
        assert await store.claim_event("slack", "Ev1")
    finally:
        await store.close()


async def test_prune_failure_is_logged_not_raised(tmp_path: Path) -> None:
    store = await HistoryStore.open(f"sqlite:///{tmp_path / 'p.db'}")
    await store.close()
    assert await prune_events_once(store) == 0
