"""Benchmark: load the newest 50 turns and build the context window, 50- vs 10,000-turn threads.

Run: `.venv/bin/python -m bench.store_window [--db sqlite|postgres|both] [--runs N]`.
PostgreSQL: a scratch database is created through THREADLINE_BENCH_POSTGRES (default
postgresql://postgres@127.0.0.1:5432/postgres) and dropped afterwards. Prints numbers only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sqlite3
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import insert, select, text

from bench._common import scratch_database
from core.context import TokenCounter, build_window
from core.conversation import ConversationKey, Role, Turn
from core.store import HistoryStore
from core.store.models import Conversation

METADATA = Conversation.metadata

SIZES = (50, 10_000)
LIMIT = 50
SYSTEM = "You are threadline, a helpful assistant in a team chat. Answer briefly."
USER_TEXT = (
    "Could you remind me what we decided about the database migration on Tuesday, "
    "and whether Bob already ran it against staging? I want to schedule production. "
)
BOT_TEXT = (
    "On Tuesday we agreed to run the migration in a maintenance window. Bob ran it on "
    "staging on Wednesday; it took four minutes and the smoke tests passed afterwards. "
)


@dataclass
class Timings:
    recent: list[float]
    window: list[float]
    total: list[float]


async def fill(store: HistoryStore, key: ConversationKey, n: int) -> None:
    """`n` alternating turns, each with one platform message id, inserted in batches."""
    first = Turn(Role.USER, USER_TEXT, "U1", "Ann", platform_message_ids=("0",))
    first_id = await store.append(key, first)
    messages, links = METADATA.tables["messages"], METADATA.tables["platform_messages"]
    async with store.engine.begin() as connection:
        conversation_id = (
            await connection.execute(
                select(messages.c.conversation_id).where(messages.c.id == first_id)
            )
        ).scalar_one()
        for start in range(1, n, 1000):
            stop = min(n, start + 1000)
            rows = [
                {
                    "conversation_id": conversation_id,
                    "role": "user" if i % 2 == 0 else "assistant",
                    "content": f"{i}: " + (USER_TEXT if i % 2 == 0 else BOT_TEXT),
                    "author_id": "U1" if i % 2 == 0 else None,
                    "author_name": "Ann" if i % 2 == 0 else None,
                    "status": "complete",
                    "created_at": datetime.now(UTC),
                }
                for i in range(start, stop)
            ]
            ids = (
                await connection.execute(insert(messages).returning(messages.c.id), rows)
            ).scalars()
            await connection.execute(
                insert(links),
                [
                    {
                        "platform": key.platform,
                        "platform_message_id": f"{key.thread}.{message_id}",
                        "space": key.space,
                        "channel": key.channel,
                        "message_id": message_id,
                        "conversation_id": conversation_id,
                    }
                    for message_id in ids
                ],
            )
        await connection.execute(text("ANALYZE"))


async def measure(
    store: HistoryStore, key: ConversationKey, counter: TokenCounter, model: str, runs: int
) -> Timings:
    timings = Timings([], [], [])
    current = Turn(Role.USER, "And what about production?", "U1", "Ann")
    for run in range(runs + 10):
        started = time.perf_counter()
        turns = await store.recent(key, limit=LIMIT)
        loaded = time.perf_counter()
        window = build_window(
            SYSTEM,
            turns,
            current,
            context_tokens=128_000,
            reply_tokens=4_000,
            counter=counter,
            model=model,
            name_for=lambda turn: turn.author_name,
        )
        done = time.perf_counter()
        assert len(window.messages) == LIMIT + 2
        if run >= 10:  # the first runs warm caches and pools
            timings.recent.append((loaded - started) * 1000)
            timings.window.append((done - loaded) * 1000)
            timings.total.append((done - started) * 1000)
    return timings


def summary(values: list[float]) -> str:
    p99 = statistics.quantiles(values, n=100, method="inclusive")[98]
    return f"median {statistics.median(values):7.3f} ms  p99 {p99:7.3f} ms"


async def bench(kind: str, runs: int, model: str) -> None:
    counter = TokenCounter()
    counter.warm_up(model)
    async with scratch_database(kind) as url:
        store = await HistoryStore.open(url)
        try:
            keys = {}
            for size in sorted(SIZES, reverse=True):  # the big thread is the older one
                keys[size] = ConversationKey("bench", "S", "C", f"thread-{size}")
                await fill(store, keys[size], size)
            version = await server_version(store)
            print(f"\n{kind} ({version}), {runs} runs each, recent(limit={LIMIT}) + build_window")
            for size in SIZES:
                timings = await measure(store, keys[size], counter, model, runs)
                print(f"  {size:>6}-turn thread  recent  {summary(timings.recent)}")
                print(f"  {'':>6}               window  {summary(timings.window)}")
                print(f"  {'':>6}               total   {summary(timings.total)}")
        finally:
            await store.close()


async def server_version(store: HistoryStore) -> str:
    if store.dialect == "sqlite":
        return f"SQLite {sqlite3.sqlite_version}"
    async with store.engine.connect() as connection:
        return str((await connection.execute(text("SHOW server_version"))).scalar_one()).join(
            ("PostgreSQL ", "")
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--model", default="gpt-4o", help="model whose tokens are counted")
    args = parser.parse_args()
    print(
        f"machine: {os.cpu_count()} CPUs, {platform.machine()}, {platform.platform()}; "
        f"Python {platform.python_version()}; model {args.model}"
    )
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    for kind in kinds:
        asyncio.run(bench(kind, args.runs, args.model))


if __name__ == "__main__":
    main()
