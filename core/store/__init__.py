"""History store over SQLModel tables, with Alembic migrations."""

from core.store.history import Branch, HistoryStore, Loaded, Orphan
from core.store.migrate import current_revision, head_revision, upgrade
from core.store.urls import mask_url, normalize_database_url

__all__ = [
    "Branch",
    "HistoryStore",
    "Loaded",
    "Orphan",
    "current_revision",
    "head_revision",
    "mask_url",
    "normalize_database_url",
    "upgrade",
]
