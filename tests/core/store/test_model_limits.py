"""Per-model context sizes: stored, only ever lowered, shared by every store on the database."""

from __future__ import annotations

from core.store import HistoryStore


async def test_an_unknown_model_has_no_limit(store: HistoryStore) -> None:
    assert await store.model_limit("never-seen") is None


async def test_a_limit_is_only_ever_lowered(store: HistoryStore) -> None:
    assert await store.lower_model_limit("llama", 4096) == 4096
    assert await store.lower_model_limit("llama", 8192) == 4096
    assert await store.model_limit("llama") == 4096
    assert await store.lower_model_limit("llama", 2048) == 2048
    assert await store.model_limit("llama") == 2048
    assert await store.model_limit("other") is None


async def test_a_limit_survives_reopening_the_database(db_url: str) -> None:
    first = await HistoryStore.open(db_url)
    try:
        await first.lower_model_limit("llama", 2048)
    finally:
        await first.close()
    second = await HistoryStore.open(db_url)
    try:
        assert await second.model_limit("llama") == 2048
    finally:
        await second.close()
