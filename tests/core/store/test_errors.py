"""Database failures surface as StoreError, whose message never contains the password."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from core.conversation import ConversationKey, Role, Turn
from core.errors import StoreError
from core.store import HistoryStore, current_revision, upgrade
from core.store.engine import create_engine
from core.store.failures import describe, translate_errors

PASSWORD = "s3cr3t-Pa55word"
KEY = ConversationKey("slack", "T", "C", "1")


@pytest.mark.parametrize("migrate", [True, False])
async def test_unreachable_postgres_is_a_store_error_without_the_password(migrate: bool) -> None:
    url = f"postgresql://threadline:{PASSWORD}@127.0.0.1:1/threadline"
    with pytest.raises(StoreError) as caught:
        await HistoryStore.open(url, migrate=migrate)
    message = str(caught.value)
    assert PASSWORD not in message
    assert message.startswith(("migrating the database failed", "connecting to the database"))


async def test_migration_helpers_raise_store_errors_without_the_password() -> None:
    url = f"postgresql://threadline:{PASSWORD}@127.0.0.1:1/threadline"
    for call in (upgrade, current_revision):
        with pytest.raises(StoreError) as caught:
            await call(url)
        assert PASSWORD not in str(caught.value)


async def test_a_sqlite_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not a SQLite database" * 100)
    with pytest.raises(StoreError, match="migrating the database failed"):
        await HistoryStore.open(f"sqlite:///{path}")


async def test_a_missing_table_is_a_store_error(store: HistoryStore) -> None:
    async with store.engine.begin() as connection:
        await connection.execute(text("DROP TABLE platform_messages"))
    with pytest.raises(StoreError, match="storing a turn failed"):
        await store.append(KEY, Turn(Role.USER, "hi", platform_message_ids=("m1",)))
    # The failed transaction was rolled back as a whole.
    assert await store.count(KEY) == 0


async def test_store_errors_do_not_carry_message_content(store: HistoryStore) -> None:
    async with store.engine.begin() as connection:
        await connection.execute(text("DROP TABLE platform_messages"))
    with pytest.raises(StoreError) as caught:
        await store.append(KEY, Turn(Role.USER, "my private words", platform_message_ids=("m",)))
    assert "my private words" not in str(caught.value)


async def test_a_closed_store_refuses_calls(db_url: str) -> None:
    store = await HistoryStore.open(db_url)
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.recent(KEY, limit=5)


def test_a_password_in_a_driver_message_is_masked() -> None:
    engine = create_engine(f"postgresql://threadline:{PASSWORD}@127.0.0.1:1/threadline")
    driver_error = RuntimeError(f"could not authenticate with {PASSWORD}\nsecond line")
    with pytest.raises(StoreError) as caught, translate_errors("testing", engine):
        raise OperationalError("SELECT 1", {}, driver_error)
    assert str(caught.value) == "testing failed: RuntimeError: could not authenticate with ***"
    assert caught.value.__cause__ is not None


def test_long_driver_messages_are_cut() -> None:
    assert len(describe(OSError("x" * 5000))) < 400
