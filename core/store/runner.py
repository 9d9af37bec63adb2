"""Run one store call's statements in one transaction: SQLite in a thread, PostgreSQL async.

A store call is a synchronous function of a SQLAlchemy `Connection` (its "work"), run in one
transaction that commits when it returns and rolls back when it raises. The modes:

* `read`: statements that only read (SQLite: plain BEGIN, never the write lock);
* `write`: reads then writes (SQLite: BEGIN IMMEDIATE, the write lock taken up front);
* `single`: exactly one statement, atomic by itself, so no transaction is opened around it
  (no BEGIN/COMMIT round trips: autocommit on PostgreSQL, no BEGIN on SQLite).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, Protocol, TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from core.store.engine import SINGLE_STATEMENT_OPTION, WRITE_OPTION, create_sqlite_sync_engine

T = TypeVar("T")
Mode = Literal["read", "write", "single"]

SQLITE_WORKERS = 8
"""Worker threads (and at most as many connections) per SQLite store."""


class Runner(Protocol):
    async def run(self, mode: Mode, work: Callable[[Connection], T]) -> T:
        """Run `work` in one transaction of `mode`; returns what it returns."""
        ...

    async def close(self) -> None:
        """Wait for running calls; release what the runner holds (not the async engine)."""
        ...


def runner_for(engine: AsyncEngine) -> Runner:
    """The runner for `engine`'s database."""
    if engine.dialect.name == "sqlite":
        return ThreadRunner(engine)
    return AsyncRunner(engine)


class AsyncRunner:
    """PostgreSQL (asyncpg): `work` runs on the event loop through `run_sync`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engines: dict[Mode, AsyncEngine] = {
            "read": engine,
            "write": engine,
            "single": engine.execution_options(isolation_level="AUTOCOMMIT"),
        }

    async def run(self, mode: Mode, work: Callable[[Connection], T]) -> T:
        async with self._engines[mode].begin() as connection:
            return await connection.run_sync(work)

    async def close(self) -> None:
        return None


class ThreadRunner:
    """SQLite: `work` runs with the `sqlite3` driver in a worker thread, the whole call at once.

    aiosqlite hands every cursor operation to its connection's thread and back (three or four
    hand-offs per statement, each a thread wake-up and an event loop wake-up); here a store call
    costs one. The event loop is free while SQLite works or waits for a lock. A call whose
    caller is cancelled still finishes in its thread (committed, or rolled back on error).
    """

    def __init__(self, engine: AsyncEngine, *, workers: int = SQLITE_WORKERS) -> None:
        self._sync = create_sqlite_sync_engine(engine, pool_size=workers)
        self._engines: dict[Mode, Engine] = {
            "read": self._sync,
            "write": self._sync.execution_options(**{WRITE_OPTION: True}),
            "single": self._sync.execution_options(**{SINGLE_STATEMENT_OPTION: True}),
        }
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="threadline-sqlite")

    @property
    def sync_engine(self) -> Engine:
        """The `sqlite3` engine the calls run on (diagnostics, tests)."""
        return self._sync

    async def run(self, mode: Mode, work: Callable[[Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, _in_transaction, self._engines[mode], work
        )

    async def close(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        self._sync.dispose()


def _in_transaction(engine: Engine, work: Callable[[Connection], T]) -> T:
    with engine.begin() as connection:
        return work(connection)
