"""Alembic revision scripts, applied in order by `core.store.migrate.upgrade`."""
