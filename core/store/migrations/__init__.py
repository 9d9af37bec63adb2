"""Alembic migrations of the history store; `core.store.migrate` runs them."""
