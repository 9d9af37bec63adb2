"""Migrations: to head on SQLite and PostgreSQL, idempotent, concurrent, and matching the models."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from core.store import HistoryStore, current_revision, head_revision, upgrade
from core.store.engine import SQLITE_BUSY_TIMEOUT_MS, create_engine

TABLES = {
    "conversations",
    "messages",
    "platform_messages",
    "processed_events",
    "model_limits",
    "streaming_answers",
    "installations",
    "oauth_states",
}


async def test_fresh_database_has_no_revision_until_upgraded(db_url: str) -> None:
    assert await current_revision(db_url) is None
    assert await upgrade(db_url) == head_revision()
    assert await current_revision(db_url) == head_revision() == "0004"


async def test_upgrade_is_idempotent(db_url: str) -> None:
    await upgrade(db_url)
    assert await upgrade(db_url) == head_revision()


async def test_concurrent_upgrades_both_succeed(db_url: str) -> None:
    results = await asyncio.gather(upgrade(db_url), upgrade(db_url))
    assert results == [head_revision(), head_revision()]


async def test_migrated_schema_has_the_tables_and_the_newest_n_index(db_url: str) -> None:
    await upgrade(db_url)
    engine = create_engine(db_url)
    try:
        async with engine.connect() as connection:
            tables, indexes = await connection.run_sync(_tables_and_message_indexes)
    finally:
        await engine.dispose()
    assert tables >= TABLES
    assert indexes["ix_messages_conversation_id_id"] == ["conversation_id", "id"]


def _tables_and_message_indexes(connection: Connection) -> tuple[set[str], dict[str, Any]]:
    inspector = inspect(connection)
    indexes = {ix["name"]: ix["column_names"] for ix in inspector.get_indexes("messages")}
    return set(inspector.get_table_names()), indexes


async def test_migrations_create_exactly_the_models(db_url: str) -> None:
    await upgrade(db_url)
    engine = create_engine(db_url)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(_differences)
    finally:
        await engine.dispose()
    assert differences == []


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, SQLModel.metadata))


async def test_open_migrates_unless_told_not_to(db_url: str) -> None:
    store = await HistoryStore.open(db_url, migrate=False)
    await store.close()
    assert await current_revision(db_url) is None
    store = await HistoryStore.open(db_url)
    await store.close()
    assert await current_revision(db_url) == head_revision()


async def test_sqlite_uses_wal_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    store = await HistoryStore.open(f"sqlite:///{path}")
    try:
        async with store.engine.connect() as connection:
            pragmas = {
                name: (await connection.execute(text(f"PRAGMA {name}"))).scalar_one()
                for name in ("journal_mode", "foreign_keys", "busy_timeout")
            }
    finally:
        await store.close()
    assert pragmas == {
        "journal_mode": "wal",
        "foreign_keys": 1,
        "busy_timeout": SQLITE_BUSY_TIMEOUT_MS,
    }
    # WAL is a property of the file: a plain sqlite3 connection sees it too.
    with sqlite3.connect(path) as plain:
        assert plain.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    plain.close()
