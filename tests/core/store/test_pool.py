"""PostgreSQL pool: connections are pinged only after sitting idle, and dropped ones replaced."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from core.conversation import ConversationKey, Role, Turn
from core.store import HistoryStore
from core.store import engine as engine_module

from .conftest import ADMIN_DSN, create_postgres_database, drop_postgres_database

pytestmark = pytest.mark.postgres
KEY = ConversationKey("slack", "T1", "C1", "1")


@pytest.fixture
async def pg_store() -> AsyncIterator[tuple[str, HistoryStore]]:
    name, url = await create_postgres_database()
    store = await HistoryStore.open(url)
    try:
        yield name, store
    finally:
        await store.close()
        await drop_postgres_database(name)


def count_pings(store: HistoryStore, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    pings: list[object] = []
    dialect = store.engine.sync_engine.dialect
    real = dialect.do_ping

    def do_ping(dbapi_connection: Any) -> bool:
        pings.append(dbapi_connection)
        return real(dbapi_connection)

    monkeypatch.setattr(dialect, "do_ping", do_ping)
    return pings


async def _terminate_backends(name: str) -> int:
    admin = await asyncpg.connect(ADMIN_DSN, timeout=5)
    try:
        rows = await admin.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
    finally:
        await admin.close()
    return len(rows)


async def test_a_busy_pool_is_not_pinged(
    pg_store: tuple[str, HistoryStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, store = pg_store
    pings = count_pings(store, monkeypatch)
    for i in range(10):
        assert await store.claim_event("slack", f"e{i}")
        await store.append_and_load(KEY, Turn(Role.USER, f"m{i}"), limit=5)
        await store.get_meta(KEY)
    assert pings == []


async def test_idle_connections_are_pinged_and_dropped_ones_replaced(
    pg_store: tuple[str, HistoryStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, store = pg_store
    await store.append(KEY, Turn(Role.USER, "before"))
    pings = count_pings(store, monkeypatch)
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 0.0)
    assert await _terminate_backends(name) >= 1  # e.g. the server restarted
    loaded = await store.append_and_load(KEY, Turn(Role.USER, "after"), limit=5)
    assert [t.content for t in loaded.turns] == ["before", "after"]
    assert len(pings) >= 1
    assert await store.count(KEY) == 2
