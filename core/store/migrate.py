"""Apply the Alembic migrations programmatically (start-up and `threadline db upgrade`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from core.store.engine import WRITE_OPTION, create_engine
from core.store.failures import translate_errors

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Serialises concurrent start-ups that share one PostgreSQL database (b"threadln").
_PG_LOCK_KEY = 0x7468726561646C6E


def alembic_config() -> Config:
    """An Alembic config for the bundled migrations; needs no alembic.ini."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest revision the bundled migrations define."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships revisions
        raise RuntimeError("no migrations found")
    return head


async def upgrade(url: str) -> str | None:
    """Migrate the database at `url` to the newest revision; returns that revision."""
    engine = create_engine(url)
    try:
        return await upgrade_engine(engine)
    finally:
        await engine.dispose()


async def current_revision(url: str) -> str | None:
    """The revision the database at `url` is at; None for a database never migrated."""
    engine = create_engine(url)
    try:
        return await current_revision_engine(engine)
    finally:
        await engine.dispose()


async def upgrade_engine(engine: AsyncEngine) -> str | None:
    """Migrate through an existing engine, in one transaction that holds the migration lock."""
    with translate_errors("migrating the database", engine):
        async with engine.connect() as connection:
            connection = await connection.execution_options(**{WRITE_OPTION: True})
            return await connection.run_sync(_upgrade_sync)


async def current_revision_engine(engine: AsyncEngine) -> str | None:
    """The revision of the database behind `engine`."""
    with translate_errors("reading the schema revision", engine):
        async with engine.connect() as connection:
            return await connection.run_sync(_current_sync)


def _upgrade_sync(connection: Connection) -> str | None:
    config = alembic_config()
    config.attributes["connection"] = connection
    with connection.begin():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        command.upgrade(config, "head")
        return _current_sync(connection)


def _current_sync(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()
