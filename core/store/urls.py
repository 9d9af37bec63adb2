"""Database URL normalisation: pick the async driver, mask passwords, prepare SQLite paths."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from core.errors import ConfigError

SETTING = "DATABASE_URL"

_SQLITE = "sqlite+aiosqlite"
_POSTGRES = "postgresql+asyncpg"
_DRIVERS = {
    "sqlite": _SQLITE,
    "sqlite+aiosqlite": _SQLITE,
    "postgresql": _POSTGRES,
    "postgres": _POSTGRES,
    "postgresql+asyncpg": _POSTGRES,
}
_USERINFO = re.compile(r"(?P<head>://[^:/@?#]*:)(?P<password>[^@/?#]*)(?P<tail>@)")


def mask_url(url: str) -> str:
    """Return `url` with any password replaced by `***`, even when it does not parse."""
    return _USERINFO.sub(r"\g<head>***\g<tail>", url)


def normalize_database_url(url: str) -> str:
    """Return a SQLAlchemy async URL for SQLite (aiosqlite) or PostgreSQL (asyncpg).

    `sqlite:///path` becomes `sqlite+aiosqlite:///path` and `postgres(ql)://...` becomes
    `postgresql+asyncpg://...`; the parent directory of a SQLite file is created. Anything
    else raises `ConfigError("DATABASE_URL", ...)`, whose message never shows the password.
    """
    text = url.strip()
    if not text:
        raise ConfigError(SETTING, "is empty")
    try:
        parsed = make_url(text)
    except (ArgumentError, ValueError):
        raise ConfigError(SETTING, f"is not a database URL: {mask_url(text)!r}") from None
    driver = _DRIVERS.get(parsed.drivername.lower())
    if driver is None:
        shown = parsed.render_as_string(hide_password=True)
        raise ConfigError(
            SETTING,
            f"unsupported database {shown!r}: use sqlite:///path/to/file.db "
            "or postgresql://user:password@host/dbname",
        )
    parsed = parsed.set(drivername=driver)
    if driver == _SQLITE:
        parsed = _prepare_sqlite(parsed)
    return parsed.render_as_string(hide_password=False)


def _prepare_sqlite(url: URL) -> URL:
    database = url.database or ""
    if database in ("", ":memory:") or url.query.get("mode") == "memory":
        raise ConfigError(
            SETTING,
            "an in-memory SQLite database is not shared between connections; "
            "use a file path such as sqlite:///data/threadline.db",
        )
    if database.startswith("file:"):
        return url  # a SQLite URI filename; the caller manages its location
    path = Path(database).expanduser()
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            SETTING, f"cannot create the directory {str(parent)!r}: {exc.strerror}"
        ) from None
    return url.set(database=str(path))
