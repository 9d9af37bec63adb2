"""Alembic environment: migrates the connection `core.store.migrate` hands over, or a URL."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from core.store import models as _models  # noqa: F401  (registers the tables for autogenerate)
from core.store.engine import WRITE_OPTION, create_engine

CONNECTION_ATTRIBUTE = "connection"


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_url(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            connection = await connection.execution_options(**{WRITE_OPTION: True})
            async with connection.begin():
                await connection.run_sync(_run)
    finally:
        await engine.dispose()


def _main() -> None:
    if context.is_offline_mode():
        raise RuntimeError("threadline migrations run online only (no --sql)")
    connection = context.config.attributes.get(CONNECTION_ATTRIBUTE)
    if isinstance(connection, Connection):
        _run(connection)
        return
    # Run by the `alembic` command (e.g. `alembic revision --autogenerate` while developing).
    url = context.config.get_main_option("sqlalchemy.url") or os.environ.get("DATABASE_URL")
    if not url:
        raise RuntimeError("set DATABASE_URL (or sqlalchemy.url) to run migrations")
    asyncio.run(_run_url(url))


_main()
