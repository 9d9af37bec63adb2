"""The PostgreSQL pool takes its sizes from the settings (THREADLINE_DB_POOL_SIZE/_MAX_OVERFLOW)."""

from __future__ import annotations

import pytest
from sqlalchemy.pool import QueuePool

from core.store import HistoryStore


async def test_the_pool_sizes_are_applied(db_url: str) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite keeps its own worker connections")
    store = await HistoryStore.open(db_url, pool_size=3, max_overflow=1)
    try:
        pool = store.engine.sync_engine.pool
        assert isinstance(pool, QueuePool)
        assert pool.size() == 3 and pool._max_overflow == 1
    finally:
        await store.close()
