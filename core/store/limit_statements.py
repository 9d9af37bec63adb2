"""Statements for the `model_limits` table: read a model's learned context size, lower it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, Table, bindparam, case, select
from sqlalchemy.dialects import postgresql, sqlite

from core.store.models import ModelLimit

MODEL_LIMITS: Table = ModelLimit.__table__  # type: ignore[attr-defined]

LIMIT_OF_MODEL = select(MODEL_LIMITS.c.context_tokens).where(
    MODEL_LIMITS.c.model == bindparam("model", type_=String())
)


def lower_limit(dialect: str) -> Any:
    """Insert a model's limit, or keep the smaller of the stored and the new one; returns it."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(MODEL_LIMITS).values(
        model=bindparam("model"),
        context_tokens=bindparam("tokens"),
        updated_at=bindparam("now"),
    )
    smaller = statement.excluded.context_tokens < MODEL_LIMITS.c.context_tokens
    return statement.on_conflict_do_update(
        index_elements=["model"],
        set_={
            "context_tokens": case(
                (smaller, statement.excluded.context_tokens), else_=MODEL_LIMITS.c.context_tokens
            ),
            "updated_at": case(
                (smaller, statement.excluded.updated_at), else_=MODEL_LIMITS.c.updated_at
            ),
        },
    ).returning(MODEL_LIMITS.c.context_tokens)


__all__ = ["LIMIT_OF_MODEL", "MODEL_LIMITS", "lower_limit"]
