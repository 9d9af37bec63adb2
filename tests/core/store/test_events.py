"""Event de-duplication: one claim wins, across tasks and across separate stores on one database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from core.store import HistoryStore


async def test_an_event_is_claimed_once(store: HistoryStore) -> None:
    assert await store.claim_event("slack", "Ev1") is True
    assert await store.claim_event("slack", "Ev1") is False
    assert await store.claim_event("slack", "Ev2") is True
    assert await store.claim_event("discord", "Ev1") is True


async def test_concurrent_claims_in_one_store_have_one_winner(store: HistoryStore) -> None:
    results = await asyncio.gather(*(store.claim_event("telegram", "u-1") for _ in range(10)))
    assert sorted(results) == [False] * 9 + [True]


async def test_two_stores_on_one_database_racing_have_one_winner(
    db_url: str, store: HistoryStore
) -> None:
    """Two engines, as two processes would have: every event goes to exactly one of them."""
    other = await HistoryStore.open(db_url)
    try:
        events = [f"race-{i}" for i in range(25)]
        results = await asyncio.gather(
            *(s.claim_event("slack", e) for e in events for s in (store, other, store, other))
        )
    finally:
        await other.close()
    per_event = [results[i : i + 4] for i in range(0, len(results), 4)]
    assert all(sorted(claims) == [False, False, False, True] for claims in per_event)
    assert sum(results) == len(events)


async def test_prune_events_forgets_old_claims_only(store: HistoryStore) -> None:
    await store.claim_event("slack", "old")
    await store.claim_event("slack", "new")
    async with store.engine.begin() as connection:
        await connection.execute(
            text("UPDATE processed_events SET created_at = :when WHERE event_id = 'old'"),
            {"when": datetime.now(UTC) - timedelta(days=3)},
        )
    assert await store.prune_events(timedelta(days=1)) == 1
    assert await store.claim_event("slack", "old") is True  # forgotten, so claimable again
    assert await store.claim_event("slack", "new") is False
    assert await store.prune_events(timedelta(days=1)) == 0
