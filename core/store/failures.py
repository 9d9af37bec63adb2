"""Translate database and migration failures into `StoreError`, never showing the password."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from alembic.util.exc import CommandError
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from core.errors import StoreError

_MAX_DETAIL = 300


@contextmanager
def translate_errors(action: str, engine: AsyncEngine | None = None) -> Iterator[None]:
    """Re-raise SQLAlchemy, driver, socket and Alembic errors as `StoreError`.

    The message names the action and the driver's first line of explanation; parameters are
    never included (engines are built with `hide_parameters`) and the password is scrubbed.
    """
    try:
        yield
    except (SQLAlchemyError, CommandError, OSError) as exc:
        password = engine.url.password if engine is not None else None
        raise StoreError(f"{action} failed: {describe(exc, password)}") from exc


def describe(exc: BaseException, password: str | None = None) -> str:
    """`ExceptionType: first line`, with `password` masked and the length bounded."""
    cause: BaseException = exc
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        cause = exc.orig
    lines = str(cause).strip().splitlines()
    detail = lines[0] if lines else ""
    # SQLAlchemy's asyncpg adapter wraps the driver's own, more telling, exception.
    name = type(cause.__cause__ if cause is not exc and cause.__cause__ else cause).__name__
    if detail.startswith("<class '") and "'>: " in detail:  # "<class 'asyncpg...X'>: message"
        qualified, detail = detail[len("<class '") :].split("'>: ", 1)
        name = qualified.rsplit(".", 1)[-1]
    if password:
        detail = detail.replace(password, "***")
    if len(detail) > _MAX_DETAIL:
        detail = detail[: _MAX_DETAIL - 1] + "…"
    return f"{name}: {detail}" if detail else name
