"""Installations and OAuth states on SQLite and PostgreSQL: sealed, found, replaced, forgotten."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from core.errors import ConfigError
from core.secret_box import SecretBox
from core.store import HistoryStore
from core.store.installations import InstallationRecords, Workspace

KEY = Fernet.generate_key().decode()
TOKEN = b'{"bot_token": "xoxb-secret-T1-token"}'


async def test_a_record_is_sealed_at_rest_found_replaced_and_deleted(store: HistoryStore) -> None:
    records = InstallationRecords(store, SecretBox(KEY))
    team = Workspace("slack", None, "T1")
    assert await records.find(team) is None
    await records.save(team, TOKEN)
    assert await records.find(team) == TOKEN
    await records.save(team, b'{"bot_token": "xoxb-rotated"}')
    assert await records.find(team) == b'{"bot_token": "xoxb-rotated"}'
    assert await records.count("slack") == 1

    def raw(connection):  # type: ignore[no-untyped-def]
        return [bytes(r[0]) for r in connection.execute(text("SELECT sealed FROM installations"))]

    [stored] = await store.run("reading raw rows", raw, write=False)
    assert b"xoxb" not in stored and b"rotated" not in stored
    assert await records.delete(team) == 1
    assert await records.find(team) is None
    assert await records.delete(team) == 0


async def test_teams_are_apart_and_an_org_wide_install_covers_its_teams(
    store: HistoryStore,
) -> None:
    records = InstallationRecords(store, SecretBox(KEY))
    await records.save(Workspace("slack", None, "T1"), b"one")
    await records.save(Workspace("slack", None, "T2"), b"two")
    await records.save(Workspace("slack", "E1", None, is_enterprise_install=True), b"org")
    assert await records.find(Workspace("slack", None, "T1")) == b"one"
    assert await records.find(Workspace("slack", None, "T2")) == b"two"
    assert await records.find(Workspace("slack", "E1", "T9")) == b"org"
    assert await records.find(Workspace("discord", None, "T1")) is None


async def test_another_key_does_not_open_a_record(store: HistoryStore) -> None:
    await InstallationRecords(store, SecretBox(KEY)).save(Workspace("slack", None, "T1"), TOKEN)
    other = InstallationRecords(store, SecretBox("x" * 40))
    with pytest.raises(ConfigError, match="THREADLINE_SECRET_KEY"):
        await other.find(Workspace("slack", None, "T1"))


async def test_a_state_is_consumed_once_and_expires(store: HistoryStore) -> None:
    records = InstallationRecords(store, SecretBox(KEY))
    await records.issue_state("s1", timedelta(minutes=10))
    await records.issue_state("s2", timedelta(milliseconds=50))
    assert await records.consume_state("s1")
    assert not await records.consume_state("s1")
    await asyncio.sleep(0.1)
    assert not await records.consume_state("s2")
    assert not await records.consume_state("never-issued")


def test_a_short_passphrase_is_refused_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match="THREADLINE_SECRET_KEY"):
        SecretBox("short")
    assert "key" not in repr(SecretBox("p" * 32)).replace("key hidden", "")
