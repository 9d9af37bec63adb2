"""Async engine factory: SQLite pragmas and explicit transactions, PostgreSQL pool settings."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from core.store.urls import normalize_database_url

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 10_000
WRITE_OPTION = "threadline_write"
"""Execution option: on SQLite, a transaction with it set starts with BEGIN IMMEDIATE."""


def create_engine(url: str) -> AsyncEngine:
    """Build the async engine for `url` (normalised first); nothing connects until first use.

    SQLite connections get WAL journaling, foreign keys and a busy timeout, and SQLAlchemy
    (not the driver) emits BEGIN: plain BEGIN for reads, BEGIN IMMEDIATE for transactions
    run with the `threadline_write` execution option, so a read-then-write transaction takes
    the write lock up front instead of failing with "database is locked" under contention.
    """
    normalized = normalize_database_url(url)
    if normalized.startswith("sqlite"):
        engine = create_async_engine(
            normalized,
            hide_parameters=True,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        _configure_sqlite(engine)
        return engine
    return create_async_engine(normalized, hide_parameters=True, pool_pre_ping=True)


def _configure_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Leave transaction control to the "begin" hook below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA synchronous = NORMAL")
            _enable_wal(cursor)
        finally:
            cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        write = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _enable_wal(cursor: Any) -> None:
    """Switch the file to WAL (persistent, so only its first connections ever do this).

    The switch needs an exclusive lock and SQLite may refuse it at once, busy timeout or not,
    while another connection (another process starting up) holds one; that connection
    switches the file instead, so a refusal is left for the next connection to retry.
    """
    try:
        cursor.execute("PRAGMA journal_mode")
        if str(cursor.fetchone()[0]).lower() == "wal":
            return
        cursor.execute("PRAGMA journal_mode = WAL")
    except Exception as exc:
        if "locked" not in str(exc) and "busy" not in str(exc):
            raise
        log.debug("SQLite busy; WAL journaling left for a later connection to enable")
