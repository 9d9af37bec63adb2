"""Engine factories: SQLite pragmas and explicit transactions, PostgreSQL pool settings."""

from __future__ import annotations

import logging
import time
from typing import Any

import sqlalchemy
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from core.store.urls import normalize_database_url

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 10_000
WRITE_OPTION = "threadline_write"
"""Execution option: on SQLite, a transaction with it set starts with BEGIN IMMEDIATE."""
SINGLE_STATEMENT_OPTION = "threadline_single_statement"
"""Execution option (SQLite): the caller runs one statement, so no BEGIN is sent for it.

The statement is its own transaction; a write statement takes the write lock as it starts
(waiting up to the busy timeout), so it cannot fail to upgrade a read lock."""
PING_AFTER_IDLE_SECONDS = 10.0
"""PostgreSQL: a pooled connection idle for longer than this is pinged before it is used."""
_IDLE_SINCE = "threadline_idle_since"


def create_engine(url: str, *, pool_size: int = 5, max_overflow: int = 10) -> AsyncEngine:
    """Build the async engine for `url` (normalised first); nothing connects until first use.

    SQLite connections get WAL journaling, foreign keys and a busy timeout, and SQLAlchemy
    (not the driver) emits BEGIN: plain BEGIN for reads, BEGIN IMMEDIATE for transactions
    run with the `threadline_write` execution option, so a read-then-write transaction takes
    the write lock up front instead of failing with "database is locked" under contention.

    PostgreSQL connections are pinged before use only after `PING_AFTER_IDLE_SECONDS` idle
    in the pool (a connection the server or a proxy dropped is replaced, and the rest of the
    pool with it); a busy pool is not pinged on every checkout (that is three round trips
    with asyncpg). The pool hands out the most recently used connection first; it keeps
    `pool_size` connections and opens up to `max_overflow` more under load.
    """
    normalized = normalize_database_url(url)
    if normalized.startswith("sqlite"):
        engine = create_async_engine(
            normalized,
            hide_parameters=True,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        _configure_sqlite(engine.sync_engine)
        return engine
    engine = create_async_engine(
        normalized,
        hide_parameters=True,
        pool_use_lifo=True,
        pool_size=pool_size,
        max_overflow=max_overflow,
    )
    _configure_postgres(engine)
    return engine


def create_sqlite_sync_engine(engine: AsyncEngine, *, pool_size: int) -> Engine:
    """A synchronous (`sqlite3`) engine on the same SQLite file as `engine`, same settings.

    For running a whole store call in one worker thread (see `core.store.runner`); at most
    `pool_size` connections, one per worker.
    """
    sync = sqlalchemy.create_engine(
        engine.url.set(drivername="sqlite+pysqlite"),
        hide_parameters=True,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        pool_size=pool_size,
        max_overflow=0,
    )
    _configure_sqlite(sync)
    return sync


def _configure_postgres(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine
    dialect = sync_engine.dialect

    @event.listens_for(sync_engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get(_IDLE_SINCE)
        if idle_since is None or time.monotonic() - idle_since <= PING_AFTER_IDLE_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:
            # The pool replaces this connection, and every other one opened before now.
            raise exc.InvalidatePoolError(f"ping after idle failed: {error}") from error


def _configure_sqlite(sync_engine: Engine) -> None:
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
        options = connection.get_execution_options()
        if options.get(SINGLE_STATEMENT_OPTION, False):
            return
        connection.exec_driver_sql("BEGIN IMMEDIATE" if options.get(WRITE_OPTION) else "BEGIN")


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
