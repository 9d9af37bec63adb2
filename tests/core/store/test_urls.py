"""Database URL normalisation: drivers, SQLite directories, refusals that hide the password."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError
from core.store import mask_url, normalize_database_url


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:pw@db.example:5432/app", "postgresql+asyncpg://u:pw@db.example:5432/app"),
        ("postgres://u:pw@db.example/app", "postgresql+asyncpg://u:pw@db.example/app"),
        ("postgresql+asyncpg://u@localhost/app", "postgresql+asyncpg://u@localhost/app"),
        (
            "POSTGRESQL://u@localhost/app?ssl=require",
            "postgresql+asyncpg://u@localhost/app?ssl=require",
        ),
        ("  postgres://u@h/app  ", "postgresql+asyncpg://u@h/app"),
    ],
)
def test_postgres_urls_get_the_asyncpg_driver(given: str, expected: str) -> None:
    assert normalize_database_url(given) == expected


def test_sqlite_url_gets_aiosqlite_and_its_directory_is_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "threadline.db"
    assert normalize_database_url(f"sqlite:///{path}") == f"sqlite+aiosqlite:///{path}"
    assert path.parent.is_dir()
    assert not path.exists()  # only the directory; the database is created on first use


def test_async_sqlite_url_is_kept(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    assert normalize_database_url(url) == url


def test_relative_sqlite_path_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert normalize_database_url("sqlite:///data/t.db") == "sqlite+aiosqlite:///data/t.db"
    assert (tmp_path / "data").is_dir()


def test_home_directory_in_a_sqlite_path_is_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    url = normalize_database_url("sqlite:///~/tl/t.db")
    assert url == f"sqlite+aiosqlite:///{tmp_path}/tl/t.db"
    assert (tmp_path / "tl").is_dir()


@pytest.mark.parametrize(
    "url",
    [
        "mysql://root:hunter2secret@localhost/app",
        "postgresql+psycopg://root:hunter2secret@localhost/app",
        "oracle://root:hunter2secret@localhost/app",
    ],
)
def test_other_databases_are_refused_without_showing_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        normalize_database_url(url)
    assert caught.value.setting == "DATABASE_URL"
    assert "hunter2secret" not in str(caught.value)
    assert "***" in str(caught.value)


@pytest.mark.parametrize(
    "url",
    ["not a url", "://root:hunter2secret@", "postgresql://root:hunter2secret@host:port/db"],
)
def test_garbage_is_refused_without_showing_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        normalize_database_url(url)
    assert caught.value.setting == "DATABASE_URL"
    assert "hunter2secret" not in str(caught.value)


@pytest.mark.parametrize("url", ["", "   ", "sqlite://", "sqlite:///:memory:"])
def test_empty_and_in_memory_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        normalize_database_url(url)


def test_uncreatable_sqlite_directory_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="cannot create the directory"):
        normalize_database_url(f"sqlite:///{blocker}/sub/t.db")


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://u:secret@h/db", "postgresql://u:***@h/db"),
        ("postgres://u:p%40ss@h:5432/db?x=1", "postgres://u:***@h:5432/db?x=1"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("sqlite:///data/t.db", "sqlite:///data/t.db"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked
