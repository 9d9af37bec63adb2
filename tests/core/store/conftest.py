"""Store fixtures: every store test runs on a SQLite file and on a fresh PostgreSQL database."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from core.store import HistoryStore, mask_url

ADMIN_DSN = os.environ.get(
    "THREADLINE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_POSTGRES = os.environ.get("THREADLINE_REQUIRE_POSTGRES") == "1"
_unreachable: list[str] = []  # remembers a failed probe so later tests skip at once


async def _admin() -> asyncpg.Connection:
    if _unreachable:
        pytest.skip(_unreachable[0])
    try:
        return await asyncpg.connect(ADMIN_DSN, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        reason = f"PostgreSQL unreachable at {mask_url(ADMIN_DSN)}: {type(exc).__name__}: {exc}"
        if REQUIRE_POSTGRES:
            pytest.fail(f"{reason} (THREADLINE_REQUIRE_POSTGRES=1)")
        _unreachable.append(reason)
        pytest.skip(reason)


def _database_url(name: str) -> str:
    base, _, _ = ADMIN_DSN.rpartition("/")
    return f"{base}/{name}"


async def create_postgres_database() -> tuple[str, str]:
    """Create an empty database; returns (name, url)."""
    name = f"threadline_test_{uuid.uuid4().hex[:12]}"
    admin = await _admin()
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name, _database_url(name)


async def drop_postgres_database(name: str) -> None:
    admin = await _admin()
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of an empty database: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'threadline.db'}"
        return
    name, url = await create_postgres_database()
    try:
        yield url
    finally:
        await drop_postgres_database(name)


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[HistoryStore]:
    """A migrated store on `db_url`."""
    opened = await HistoryStore.open(db_url)
    try:
        yield opened
    finally:
        await opened.close()
