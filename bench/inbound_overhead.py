"""Benchmark: inbound message -> first sink write, minus the server's time to first token.

Goal: p50 <= 5 ms and p99 <= 20 ms with a 200-message history, on SQLite and on PostgreSQL.

Run: `.venv/bin/python -m bench.inbound_overhead [--db sqlite|postgres|both] [--runs N]`.

The runtime is built by `bots.wiring.build_runtime` (real store, token counter, pacer, driver);
the service gets the same pieces, but its HTTP client has a transport that timestamps the request
(httpcore trace: request body sent) and the arrival of the first SSE chunk carrying content. The
fake OpenAI server runs in its own process and pauses 2 ms between deltas after the first (as a
model does; without a pause the reader drains the whole buffered answer before the writer task
gets to post, which no real stream shows). Every iteration answers a fresh `Inbound` in a fresh
conversation that already holds 200 turns (100 user/assistant pairs of 200-600 characters,
copied from a template with INSERT ... SELECT before the timed loop), so the history stays at 200
turns. The sink records `time.perf_counter()` of its first post that carries text.

  overhead = (first post - handle() start) - (first content chunk arrived - request sent)

PostgreSQL: a scratch database is created through THREADLINE_BENCH_POSTGRES (default
postgresql://postgres@127.0.0.1:5432/postgres) and dropped afterwards; if the server cannot be
reached that is printed and the run goes on. Prints numbers only.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import random
import re
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
from sqlalchemy import insert, text

from bench._common import (
    CountingSink,
    fake_server,
    function_costs,
    machine,
    median,
    percentile,
    profile_report,
    realistic_limits,
    scratch_database,
)
from bots.config import load_settings
from bots.wiring import Runtime, build_runtime, freeze_startup_heap, llm_endpoint, service_config
from core.context import TokenCounter, build_window
from core.conversation import ConversationKey, Inbound, Role, Turn
from core.llm import ChatCompletionsClient
from core.service import ChatService
from core.store import HistoryStore
from core.store.models import Conversation

MODEL = "gpt-4o-mini"
HISTORY = 200
GOAL_P50_MS, GOAL_P99_MS = 5.0, 20.0
PLATFORM, SPACE, CHANNEL = "bench", "T1", "C1"
_WORDS_TEXT = (
    "we the migration staging production deploy schedule window rollback index query table "
    "service latency budget review meeting Tuesday Bob Ann team release notes config value "
    "timeout retry cache stream answer thread message model request plan check test run "
    "should could would will can it is was and or but so then also because after before"
)
WORDS = tuple(_WORDS_TEXT.split())
CONTENT = re.compile(rb'"content": ?"[^"]')
HOT_FUNCTIONS = (
    ("core/store/history.py", "claim_event"),
    ("core/store/history.py", "get_meta"),
    ("core/store/history.py", "append"),
    ("core/store/history.py", "append_and_load"),
    ("core/store/history.py", "recent"),
    ("core/store/history.py", "_turn_of"),
    ("core/context/window.py", "build_window"),
    ("core/context/tokens.py", "count_message"),
    ("tiktoken/model.py", "encoding_name_for_model"),
    ("core/llm/names.py", "sanitize_name"),
    ("core/llm/request.py", "to_payload"),
    ("json/encoder.py", "encode"),
    ("httpcore/_synchronization.py", "current_async_library"),
    ("core/streaming/driver.py", "_step"),
)


def prose(rng: random.Random, low: int, high: int) -> str:
    """A message of `low`..`high` characters: sentences of plain words."""
    target = rng.randint(low, high)
    sentences: list[str] = []
    length = 0
    while length < target:
        words = [rng.choice(WORDS) for _ in range(rng.randint(6, 16))]
        sentence = " ".join(words).capitalize() + rng.choice("..?!")
        sentences.append(sentence)
        length += len(sentence) + 1
    return " ".join(sentences)[:target].rstrip() + "."


# -- timing the HTTP request ---------------------------------------------------------------


@dataclass
class RequestMarks:
    """perf_counter() stamps of one chat request, taken in the transport."""

    entered: float = 0.0
    sent: float | None = None  # request body written (httpcore trace)
    connects: int = 0  # new TCP connections opened for this request
    connect_started: float | None = None
    connect_seconds: float = 0.0
    headers: float | None = None
    first_content: float | None = None  # first chunk with a non-empty "content"


class _MarkingStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, marks: RequestMarks) -> None:
        self._inner = inner
        self._marks = marks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        marks = self._marks
        async for chunk in self._inner:
            if marks.first_content is None and CONTENT.search(chunk):
                marks.first_content = time.perf_counter()
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class MarkingTransport(httpx.AsyncBaseTransport):
    """Delegates to a real transport; stamps request sent and first content chunk."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner
        self.requests: list[RequestMarks] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        marks = RequestMarks(entered=time.perf_counter())
        self.requests.append(marks)

        async def trace(name: str, info: dict[str, Any]) -> None:
            if name == "http11.send_request_body.complete":
                marks.sent = time.perf_counter()
            elif name == "connection.connect_tcp.started":
                marks.connect_started = time.perf_counter()
            elif name == "connection.connect_tcp.complete":
                marks.connects += 1
                if marks.connect_started is not None:
                    marks.connect_seconds += time.perf_counter() - marks.connect_started
            elif name == "http11.receive_response_headers.complete":
                marks.headers = time.perf_counter()

        request.extensions = {**request.extensions, "trace": trace}
        response = await self._inner.handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _MarkingStream(response.stream, marks)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class TimedStore:
    """Forwards to a HistoryStore and records (name, start, end) of every call."""

    def __init__(self, store: HistoryStore) -> None:
        self._store = store
        self.calls: list[tuple[str, float, float]] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not callable(attribute) or name.startswith("_"):
            return attribute

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await attribute(*args, **kwargs)
            finally:
                self.calls.append((name, started, time.perf_counter()))

        return timed


class GcWatch:
    """Records (start, end, generation) of every garbage collection while installed."""

    def __init__(self) -> None:
        self.pauses: list[tuple[float, float, int]] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((self._started, time.perf_counter(), int(info["generation"])))

    def __enter__(self) -> GcWatch:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)

    def within(self, start: float, end: float) -> float:
        return sum(
            min(end, stop) - max(start, begin)
            for begin, stop, _ in self.pauses
            if begin < end and stop > start
        )


# -- databases -----------------------------------------------------------------------------


async def server_version(store: HistoryStore) -> str:
    if store.dialect == "sqlite":
        return f"SQLite {sqlite3.sqlite_version}"
    async with store.engine.connect() as connection:
        version = (await connection.execute(text("SHOW server_version"))).scalar_one()
        return f"PostgreSQL {version}"


async def prefill(
    store: HistoryStore, counter: TokenCounter, conversations: int, seed: int = 7
) -> list[ConversationKey]:
    """One template of HISTORY turns (token counts stored, as the service stores them), then
    `conversations` copies of it, one per iteration."""
    rng = random.Random(seed)
    template = ConversationKey(PLATFORM, SPACE, CHANNEL, "template")
    for number in range(HISTORY // 2):
        question = prose(rng, 200, 400)
        await store.append(
            template,
            Turn(
                Role.USER,
                question,
                "U1",
                "Ann",
                platform_message_ids=(f"q{number}",),
                token_count=counter.count(question, MODEL),
            ),
        )
        answer = prose(rng, 300, 600)
        await store.append(
            template,
            Turn(
                Role.ASSISTANT,
                answer,
                platform_message_ids=(f"a{number}",),
                token_count=counter.count(answer, MODEL),
            ),
        )
    tables = Conversation.metadata.tables
    conversations_table = tables["conversations"]
    keys = [ConversationKey(PLATFORM, SPACE, CHANNEL, f"it-{i}") for i in range(conversations)]
    now = datetime.now(UTC)
    columns = "role, content, author_id, author_name, status, token_count, created_at, finished_at"
    async with store.engine.begin() as connection:
        template_id = (
            await connection.execute(text("SELECT id FROM conversations WHERE thread = 'template'"))
        ).scalar_one()
        ids = (
            await connection.execute(
                insert(conversations_table).returning(conversations_table.c.id),
                [
                    {
                        "platform": key.platform,
                        "space": key.space,
                        "channel": key.channel,
                        "thread": key.thread,
                        "created_at": now,
                        "updated_at": now,
                        "meta": "{}",
                    }
                    for key in keys
                ],
            )
        ).scalars()
        for conversation_id in list(ids):
            await connection.execute(
                text(
                    f"INSERT INTO messages (conversation_id, {columns}) "
                    f"SELECT :cid, {columns} FROM messages WHERE conversation_id = :template "
                    "ORDER BY id"
                ),
                {"cid": conversation_id, "template": template_id},
            )
            await connection.execute(
                text(
                    "INSERT INTO platform_messages "
                    "(platform, platform_message_id, space, channel, message_id, conversation_id) "
                    "SELECT :platform, 'p' || CAST(id AS TEXT), :space, :channel, id, "
                    "conversation_id FROM messages WHERE conversation_id = :cid ORDER BY id"
                ),
                {"cid": conversation_id, "platform": PLATFORM, "space": SPACE, "channel": CHANNEL},
            )
        await connection.execute(text("ANALYZE"))
    return keys


# -- the measurement -----------------------------------------------------------------------


@dataclass
class Iteration:
    total: float  # handle() start -> first post with text
    to_sent: float  # handle() start -> request body sent
    server: float  # request sent -> first content chunk arrived
    to_post: float  # first content chunk -> first post
    store_before_send: float  # time inside store calls before the request was sent
    connects: int
    connect: float  # time spent opening TCP connections before the request was sent
    handle: float  # the whole handle() call: answer streamed, finished and stored
    started: float  # perf_counter() at handle() start
    gc: float = 0.0  # garbage collection pauses between handle() start and the first post

    @property
    def overhead(self) -> float:
        return self.total - self.server


@dataclass
class Result:
    label: str
    iterations: list[Iteration] = field(default_factory=list)
    store_calls: dict[str, list[float]] = field(default_factory=dict)
    window_ms: float = float("nan")
    gen2: int = 0
    handle_ms: list[float] = field(default_factory=list)


def question(rng: random.Random) -> str:
    return prose(rng, 80, 160).rstrip(".") + "?"


async def run_db(kind: str, base_url: str, args: argparse.Namespace) -> Result | None:
    try:
        async with scratch_database(kind) as url:
            return await measure(kind, url, base_url, args)
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"\n{kind}: not reachable ({type(exc).__name__}: {exc}); skipped")
        return None


async def measure(kind: str, url: str, base_url: str, args: argparse.Namespace) -> Result:
    settings = load_settings(
        None,
        OPENAI_BASE_URL=base_url,
        DATABASE_URL=url,
        THREADLINE_MODEL=MODEL,
        THREADLINE_USER_HASH_KEY="bench-user-hash-key",
        THREADLINE_HISTORY_TURNS=str(HISTORY),
        THREADLINE_USER_RATE="0",  # one user sends every message
    )
    runtime: Runtime = await build_runtime(settings)
    if args.gc_freeze:  # as `threadline` does after start-up (bots.wiring.freeze_startup_heap)
        freeze_startup_heap()
    endpoint = llm_endpoint(settings)
    transport = MarkingTransport(
        httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50)
        )
    )
    http = httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(
            connect=endpoint.connect_timeout,
            read=endpoint.chunk_timeout,
            write=endpoint.connect_timeout,
            pool=endpoint.connect_timeout,
        ),
    )
    store = TimedStore(runtime.store)
    service = ChatService(
        store=store,  # type: ignore[arg-type]
        llm=ChatCompletionsClient(http, endpoint),
        driver=runtime.driver,
        counter=runtime.counter,
        config=service_config(settings),
    )
    try:
        runtime.counter.warm_up(MODEL)
        count = args.warmup + args.runs
        started = time.perf_counter()
        keys = await prefill(
            runtime.store, runtime.counter, count + (args.profile_runs if args.profile else 0)
        )
        version = await server_version(runtime.store)
        frozen = ", start-up heap frozen (gc.freeze)" if args.gc_freeze else ""
        print(
            f"\n{kind} ({version}){frozen}: {count} conversations of {HISTORY} turns prefilled in"
            f" {time.perf_counter() - started:.1f} s; {args.warmup} warm-up + {args.runs} measured"
            " iterations, one fresh conversation each"
        )
        result = Result(kind)
        rng = random.Random(11)
        with GcWatch() as watch:
            for number, key in enumerate(keys[:count]):
                iteration = await one(service, store, transport, key, number, question(rng))
                if number >= args.warmup:
                    result.iterations.append(iteration)
                    for name, begin, end in store.calls:
                        result.store_calls.setdefault(name, []).append((end - begin) * 1e3)
        for iteration in result.iterations:
            iteration.gc = watch.within(iteration.started, iteration.started + iteration.total)
        result.gen2 = sum(1 for *_, generation in watch.pauses if generation == 2)
        turns = await runtime.store.recent(keys[0], limit=HISTORY)
        result.window_ms = time_window(runtime, settings, turns)
        if args.profile:
            profile = cProfile.Profile()
            for number, key in enumerate(keys[count:], start=count):
                await one(service, store, transport, key, number, question(rng), profile)
            print(f"  profile of {args.profile_runs} handle() calls, {kind}:")
            profile_report(profile, args.top)
            print("    per handle(), cumulative (cProfile-inflated), selected functions:")
            function_costs(profile, HOT_FUNCTIONS, args.profile_runs)
        return result
    finally:
        await http.aclose()
        await runtime.aclose()


async def one(
    service: ChatService,
    store: TimedStore,
    transport: MarkingTransport,
    key: ConversationKey,
    number: int,
    text_: str,
    profile: cProfile.Profile | None = None,
) -> Iteration:
    sink = CountingSink(realistic_limits(min_edit_interval=0.5))
    inbound = Inbound(
        key=key,
        message_id=f"{number}.000100",
        author_id="U1",
        author_name="Ann",
        text=text_,
        is_direct=False,
        event_id=f"ev-{uuid.uuid4().hex}",
    )
    store.calls.clear()
    transport.requests.clear()
    if profile is not None:
        profile.enable()
    started = time.perf_counter()
    outcome = await service.handle(inbound, sink)
    ended = time.perf_counter()
    if profile is not None:
        profile.disable()
    assert outcome.error is None and outcome.text, outcome
    marks = transport.requests[-1]
    assert marks.sent is not None and marks.first_content is not None
    assert sink.first_post_at is not None
    before = sum(end - begin for _, begin, end in store.calls if end <= marks.sent)
    iteration = Iteration(
        total=sink.first_post_at - started,
        to_sent=marks.sent - started,
        server=marks.first_content - marks.sent,
        to_post=sink.first_post_at - marks.first_content,
        store_before_send=before,
        connects=sum(m.connects for m in transport.requests),
        connect=sum(m.connect_seconds for m in transport.requests),
        handle=ended - started,
        started=started,
    )
    return iteration


def time_window(runtime: Runtime, settings: Any, turns: list[Turn]) -> float:
    """Median ms of build_window over the loaded turns (token counting included)."""
    config = service_config(settings)
    samples = []
    for _ in range(30):
        started = time.perf_counter()
        build_window(
            config.system_prompt,
            turns[:-1],
            turns[-1],
            context_tokens=config.context_window,
            reply_tokens=config.reply_tokens,
            counter=runtime.counter,
            model=MODEL,
            name_for=lambda turn: turn.author_name,
        )
        samples.append((time.perf_counter() - started) * 1e3)
    return median(samples)


def report(result: Result) -> None:
    its = result.iterations

    def row(label: str, values: list[float]) -> str:
        return (
            f"  {label:<44} p50 {percentile(values, 0.5):7.2f}  p95 {percentile(values, 0.95):7.2f}"
            f"  p99 {percentile(values, 0.99):7.2f}  max {max(values):7.2f} ms"
        )

    def ms(value: Callable[[Iteration], float]) -> list[float]:
        return [value(i) * 1e3 for i in its]

    overhead = ms(lambda i: i.overhead)
    print(row("overhead (first post - start - server TTFT)", overhead))
    print(row("  handle() start -> request sent", ms(lambda i: i.to_sent)))
    print(row("    of which store calls", ms(lambda i: i.store_before_send)))
    print(row("    of which opening a TCP connection", ms(lambda i: i.connect)))
    rest = ms(lambda i: i.to_sent - i.store_before_send - i.connect)
    print(row("    the rest (window, tokens, request, ...)", rest))
    print(row("  first content chunk -> first post", ms(lambda i: i.to_post)))
    print(row("  GC pauses between start and first post", ms(lambda i: i.gc)))
    print(row("request sent -> first content chunk (server)", ms(lambda i: i.server)))
    print(row("handle() start -> first post (raw)", ms(lambda i: i.total)))
    print(row("whole handle() (incl. the server's pacing)", ms(lambda i: i.handle)))
    calls = ", ".join(
        f"{name} {median(values):.2f} x{len(values) // len(its)}"
        for name, values in sorted(result.store_calls.items())
    )
    print(f"  store calls per handle(), median ms x calls per iteration: {calls}")
    print(
        f"  build_window over the loaded {HISTORY} turns alone (token counting):"
        f" {result.window_ms:.2f} ms median"
    )
    connects = sum(i.connects for i in its)
    print(f"  new TCP connections to the LLM server: {connects} in {len(its)} requests")
    slowest = sorted(its, key=lambda i: i.overhead)[-max(1, len(its) // 100) :]
    print(
        f"  slowest 1% ({len(slowest)}): "
        + "; ".join(
            f"{i.overhead * 1e3:.1f} ms (store {i.store_before_send * 1e3:.1f},"
            f" GC {i.gc * 1e3:.1f})"
            for i in slowest
        )
        + f"; {result.gen2} full (gen 2) collections in the measured loop"
    )
    p50, p99 = percentile(overhead, 0.5), percentile(overhead, 0.99)
    verdict = "met" if p50 <= GOAL_P50_MS and p99 <= GOAL_P99_MS else "NOT met"
    print(
        f"  goal p50 <= {GOAL_P50_MS:g} ms and p99 <= {GOAL_P99_MS:g} ms:"
        f" p50 {p50:.2f}, p99 {p99:.2f} -> {verdict}"
    )


async def main_async(args: argparse.Namespace, base_url: str) -> None:
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    for kind in kinds:
        result = await run_db(kind, base_url, args)
        if result is not None:
            report(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--runs", type=int, default=300, help="measured iterations per database")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument(
        "--delay", type=float, default=0.002, help="server's pause between deltas after the first"
    )
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument(
        "--no-gc-freeze",
        dest="gc_freeze",
        action="store_false",
        help="what-if: skip the gc.freeze() the service does after start-up",
    )
    parser.add_argument("--profile-runs", type=int, default=30)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(machine())
    with fake_server("--delay-between", f"{args.delay:g}") as base_url:
        asyncio.run(main_async(args, base_url))


if __name__ == "__main__":
    main()
