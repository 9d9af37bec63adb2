"""Benchmark: client CPU per streamed delta, whole path vs a bare httpx loop (goal: at most 2x).

Run: `.venv/bin/python -m bench.pipeline_cpu [--runs N] [--words N] [--no-profile|--profile-all]`.

The fake OpenAI server runs in its own process (its CPU is not counted) and echoes the last
user message word by word, so a message of N words gives an answer of N + 1 content deltas.
Measured in this process (user + system CPU, all threads) for the same answer:

  (a) bare loop: `httpx.AsyncClient.stream("POST", ...)`, `aiter_lines()`, one `json.loads`
      per `data:` line - the minimal honest consumer;
  (b) whole path: `ChatCompletionsClient.stream()` -> `ReplyStream.update()` per delta ->
      counting in-memory sink (4,000 chars a message, one 1000/s scope) -> `finish()`,
      with min_edit_interval 0.5 s (a real platform) and 0 (an edit whenever possible);
      also the client alone (events dropped) to split client from driver;
  (c) `ChatService.handle()` built by `bots.wiring.build_runtime`, SQLite store in a temp dir,
      and the same with a short question to separate the per-message cost.

Part 1 streams without delays (3,000 deltas): the client never waits, so it shows the parsing
path. Part 2 runs a second server started with `--delay-between 0.001` (1,000 deltas, 1 ms
apart): the reader waits for every delta, so the driver's writer runs between them.

Variants are interleaved in every round; medians over the rounds. Prints numbers only. When a
variant costs more than 2x the bare loop, cProfile shows where the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import random
import resource
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from bench._common import (
    CountingSink,
    fake_server,
    machine,
    median,
    profile_report,
    realistic_limits,
)
from bots.config import load_settings
from bots.wiring import Runtime, build_runtime
from core.clock import SystemClock
from core.conversation import ConversationKey, Inbound
from core.llm import (
    ChatCompletionsClient,
    ChatMessage,
    ChatParams,
    ChatRequest,
    ContentDelta,
    LLMEndpoint,
)
from core.streaming import Pacer, StreamDriver

GOAL = 2.0
LABEL_B05 = "(b) client -> driver -> sink, min_edit 0.5 s"
LABEL_B0 = "(b) client -> driver -> sink, min_edit 0"
MODEL = "gpt-4o-mini"
_VOCABULARY_TEXT = (
    "the a to of and in is it that for you with on this as be are can will your not or "
    "stream token answer message model request server client window context history thread "
    "update edit budget limit platform reply user bot latency buffer chunk delta event "
    "database migration staging production deploy config value parameter timeout retry"
)
VOCABULARY = tuple(_VOCABULARY_TEXT.split())


def answer_text(words: int, seed: int = 1) -> str:
    """Markdown-ish prose of `words` words: sentences, paragraphs, lists, emphasis, code."""
    rng = random.Random(seed)
    out: list[str] = []
    count = 0
    while count < words:
        kind = rng.random()
        if kind < 0.1:  # a fenced code block
            lines = [
                f"    {rng.choice(VOCABULARY)} = {rng.choice(VOCABULARY)}({rng.randint(1, 99)})"
                for _ in range(rng.randint(3, 8))
            ]
            block = "```python\n" + "\n".join(lines) + "\n```"
            out.append(block)
            count += len(block.split())
            continue
        if kind < 0.25:  # a bullet list
            items = []
            for _ in range(rng.randint(2, 5)):
                item = " ".join(rng.choice(VOCABULARY) for _ in range(rng.randint(4, 10)))
                items.append(f"- **{item.split()[0]}** {item}")
            out.append("\n".join(items))
            count += sum(len(item.split()) for item in items)
            continue
        sentences = []
        for _ in range(rng.randint(2, 5)):
            picked = [rng.choice(VOCABULARY) for _ in range(rng.randint(6, 18))]
            if rng.random() < 0.3:
                spot = rng.randrange(len(picked))
                picked[spot] = f"`{picked[spot]}()`" if rng.random() < 0.5 else f"*{picked[spot]}*"
            sentences.append(" ".join(picked).capitalize() + rng.choice(".?!."))
        out.append(" ".join(sentences))
        count += sum(len(sentence.split()) for sentence in sentences)
    return "\n\n".join(out)


@dataclass
class Sample:
    cpu: float
    wall: float
    deltas: int
    writes: int = 0
    system_share: float = 0.0  # of the CPU, the part spent in the kernel (getrusage)


Runner = Callable[[cProfile.Profile | None], Awaitable[Sample]]


@dataclass
class Variant:
    name: str
    label: str
    run: Runner
    samples: list[Sample] = field(default_factory=list)

    def cpu_per_delta_us(self) -> float:
        return median([s.cpu / s.deltas * 1e6 for s in self.samples])


async def measured(
    body: Callable[[], Awaitable[tuple[int, int]]], profile: cProfile.Profile | None = None
) -> Sample:
    gc.collect()
    if profile is not None:
        profile.enable()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    try:
        deltas, writes = await body()
    finally:
        if profile is not None:
            profile.disable()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    user = usage1.ru_utime - usage0.ru_utime
    system = usage1.ru_stime - usage0.ru_stime
    return Sample(cpu, wall, deltas, writes, system / (user + system) if user + system else 0.0)


async def bare_loop(http: httpx.AsyncClient, url: str, payload: dict[str, object]) -> int:
    """Data lines that carried a content delta; one json.loads per data line."""
    deltas = 0
    async with http.stream(
        "POST", url, json=payload, headers={"Accept": "text/event-stream"}
    ) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                data = line[6:]
                if data == "[DONE]":
                    continue  # read on to the end of the body: the connection stays reusable
                chunk = json.loads(data)
                choices = chunk["choices"]
                if choices and choices[0]["delta"].get("content"):
                    deltas += 1
    return deltas


async def client_only(llm: ChatCompletionsClient, request: ChatRequest) -> tuple[int, int]:
    """`ChatCompletionsClient.stream()` alone: the events are counted and dropped."""
    deltas = 0
    async for event in llm.stream(request):
        if isinstance(event, ContentDelta):
            deltas += 1
    return deltas, 0


async def whole_path(
    llm: ChatCompletionsClient, driver: StreamDriver, request: ChatRequest, min_edit: float
) -> tuple[int, int]:
    """The service's streaming loop without the store: client -> ReplyStream -> sink."""
    sink = CountingSink(realistic_limits(min_edit_interval=min_edit))
    stream = driver.open(sink)
    await stream.start()
    text = ""
    deltas = 0
    async for event in llm.stream(request):
        if isinstance(event, ContentDelta):
            text += event.text
            stream.update(text)
            deltas += 1
    result = await stream.finish(text)
    assert result.delivered, result
    return deltas, sink.writes


class Harness:
    """The clients every variant shares, against one fake server."""

    def __init__(self, base_url: str, workdir: str) -> None:
        self.base_url = base_url
        self.url = f"{base_url}/chat/completions"
        self.settings = load_settings(
            None,
            OPENAI_BASE_URL=base_url,
            DATABASE_URL=f"sqlite:///{workdir}/bench.db",
            THREADLINE_MODEL=MODEL,
            THREADLINE_USER_HASH_KEY="bench-user-hash-key",
        )
        endpoint = LLMEndpoint(base_url=base_url, api_key=None, auth_style="none")
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=60.0))
        self.llm = ChatCompletionsClient(self.http, endpoint)
        self.driver = StreamDriver(Pacer(SystemClock()))
        self.conversations = iter(range(1_000_000))
        self.runtime: Runtime | None = None

    async def start(self) -> None:
        self.runtime = await build_runtime(self.settings)
        self.runtime.counter.warm_up(MODEL)

    async def aclose(self) -> None:
        await self.http.aclose()
        if self.runtime is not None:
            await self.runtime.aclose()

    def request(self, text: str) -> ChatRequest:
        message = ChatMessage(role="user", content=text)
        return ChatRequest(messages=(message,), params=ChatParams(model=MODEL))

    def bare(self, text: str) -> Runner:
        payload = self.llm._payload(self.request(text))  # the exact body the client sends

        async def run(profile: cProfile.Profile | None) -> Sample:
            async def body() -> tuple[int, int]:
                return await bare_loop(self.http, self.url, payload), 0

            return await measured(body, profile)

        return run

    def client(self, text: str) -> Runner:
        request = self.request(text)

        async def run(profile: cProfile.Profile | None) -> Sample:
            return await measured(lambda: client_only(self.llm, request), profile)

        return run

    def path(self, text: str, min_edit: float) -> Runner:
        request = self.request(text)

        async def run(profile: cProfile.Profile | None) -> Sample:
            return await measured(
                lambda: whole_path(self.llm, self.driver, request, min_edit), profile
            )

        return run

    def service(self, text: str) -> Runner:
        async def run(profile: cProfile.Profile | None) -> Sample:
            assert self.runtime is not None
            service = self.runtime.service
            number = next(self.conversations)
            sink = CountingSink(realistic_limits(min_edit_interval=0.5))
            inbound = Inbound(
                key=ConversationKey("bench", "S1", "C1", f"t{number}"),
                message_id=f"in{number}",
                author_id="U1",
                author_name="Ann",
                text=text,
                is_direct=False,
            )

            async def body() -> tuple[int, int]:
                outcome = await service.handle(inbound, sink)
                assert outcome.error is None and outcome.status is not None, outcome
                return len(outcome.text.split()), sink.writes  # the echo: one delta a word

            return await measured(body, profile)

        return run


async def run_rounds(variants: list[Variant], runs: int, warmup: int = 2) -> None:
    """Warm-up rounds, then `runs` rounds; the variants are interleaved in every round."""
    for _ in range(warmup):
        for variant in variants:
            await variant.run(None)
    for _ in range(runs):
        for variant in variants:
            variant.samples.append(await variant.run(None))


def table(variants: list[Variant]) -> float:
    """Print the per-delta table; returns the bare loop's CPU per delta (µs)."""
    bare = variants[0].cpu_per_delta_us()
    print(
        f"  {'variant':<46} {'CPU/delta':>10} {'ratio':>6} {'kernel':>6}"
        f" {'wall/answer':>12} {'writes':>7}"
    )
    for variant in variants:
        per = variant.cpu_per_delta_us()
        wall = median([s.wall for s in variant.samples]) * 1e3
        writes = median([s.writes for s in variant.samples])
        kernel = median([s.system_share for s in variant.samples])
        print(
            f"  {variant.label:<46} {per:8.1f} µs {per / bare:5.2f}x {kernel:6.0%}"
            f" {wall:9.0f} ms {writes:7.0f}"
        )
    spread = ", ".join(
        f"{v.name} {min(s.cpu / s.deltas for s in v.samples) * 1e6:.1f}"
        f"-{max(s.cpu / s.deltas for s in v.samples) * 1e6:.1f}"
        for v in variants
    )
    print(f"  CPU/delta range over rounds (µs): {spread}")
    return bare


def verdicts(variants: list[Variant], bare: float) -> None:
    for variant in variants[1:]:
        ratio = variant.cpu_per_delta_us() / bare
        print(f"    {variant.label}: {ratio:.2f}x -> {'met' if ratio <= GOAL else 'NOT met'}")


async def profile_over_goal(variants: list[Variant], everything: bool, top: int) -> None:
    bare = variants[0].cpu_per_delta_us()
    over = [v for v in variants[1:] if everything or v.cpu_per_delta_us() / bare > GOAL]
    if not over:
        return
    for variant in [*over, variants[0]]:
        profile = cProfile.Profile()
        await variant.run(profile)
        print(f"\n  profile of one answer, {variant.label} (cProfile inflates times):")
        profile_report(profile, top if variant is not variants[0] else 10)


async def burst(args: argparse.Namespace, base_url: str, workdir: str) -> None:
    """Part 1: the server writes as fast as it can."""
    text = answer_text(args.words)
    short = "Could you summarise what we decided about the database migration on Tuesday?"
    harness = Harness(base_url, workdir)
    try:
        await harness.start()
        variants = [
            Variant("a", "(a) bare httpx loop + json.loads", harness.bare(text)),
            Variant(
                "client", "(b) part: ChatCompletionsClient.stream() only", harness.client(text)
            ),
            Variant("b05", LABEL_B05, harness.path(text, 0.5)),
            Variant("b0", LABEL_B0, harness.path(text, 0.0)),
            Variant("c", "(c) ChatService.handle, SQLite store", harness.service(text)),
        ]
        short_variant = Variant("cs", "(c) with a short question", harness.service(short))
        await run_rounds([*variants, short_variant], args.runs)
        deltas = variants[2].samples[0].deltas
        print(
            f"\n1. unpaced: the server sends {deltas} content deltas ({len(text) + 6} chars)"
            f" as fast as it can; {args.runs} interleaved rounds after 2 warm-up rounds, medians"
        )
        bare = table(variants)
        long_cpu = median([s.cpu for s in variants[4].samples])
        short_cpu = median([s.cpu for s in short_variant.samples])
        short_deltas = short_variant.samples[0].deltas
        marginal = (long_cpu - short_cpu) / (deltas - short_deltas) * 1e6
        print(
            f"  (c) split: a {short_deltas}-delta answer to a short question costs"
            f" {short_cpu * 1e3:.1f} ms CPU per message (event claim, store, window, request),"
            f" each further delta {marginal:.1f} µs ({marginal / bare:.2f}x the bare loop)"
        )
        print(
            "  note: the client never waits for the socket here, so the writer task rarely"
            " runs and min_edit makes no difference; part 2 exercises the writes"
        )
        print(f"  goal: at most {GOAL:.0f}x the bare loop's CPU per delta")
        verdicts(variants, bare)
        print(
            f"    (c) per further delta, the per-message cost left out: {marginal / bare:.2f}x ->"
            f" {'met' if marginal / bare <= GOAL else 'NOT met'}"
        )
        if args.profile:
            await profile_over_goal(variants, args.profile_all, args.top)
    finally:
        await harness.aclose()


async def paced(args: argparse.Namespace, base_url: str, workdir: str) -> None:
    """Part 2: the server waits between deltas, so the driver writes while the answer streams."""
    text = answer_text(args.paced_words, seed=2)
    harness = Harness(base_url, workdir)
    try:
        variants = [
            Variant("pa", "(a) bare httpx loop + json.loads", harness.bare(text)),
            Variant("pb05", LABEL_B05, harness.path(text, 0.5)),
            Variant("pb0", LABEL_B0, harness.path(text, 0.0)),
        ]
        await run_rounds(variants, args.runs, warmup=1)
        deltas = variants[1].samples[0].deltas
        print(
            f"\n2. paced: {deltas} content deltas, {args.delay * 1e3:g} ms apart (asyncio.sleep in"
            f" the server); {args.runs} interleaved rounds after 1 warm-up round, medians"
        )
        bare = table(variants)
        print(f"  goal: at most {GOAL:.0f}x the bare loop's CPU per delta")
        verdicts(variants, bare)
        if args.profile:
            await profile_over_goal(variants, args.profile_all, args.top)
    finally:
        await harness.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=7, help="measured rounds (>= 5)")
    parser.add_argument("--words", type=int, default=3000, help="deltas per unpaced answer")
    parser.add_argument("--paced-words", type=int, default=1000, help="deltas per paced answer")
    parser.add_argument("--delay", type=float, default=0.001, help="seconds between paced deltas")
    parser.add_argument("--top", type=int, default=25, help="functions shown per profile")
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument("--profile-all", action="store_true", help="profile (b) and (c) always")
    args = parser.parse_args()
    print(machine())
    with fake_server() as base_url, tempfile.TemporaryDirectory() as workdir:
        asyncio.run(burst(args, base_url, workdir))
    delay = f"{args.delay:g}"
    with (
        fake_server("--delay-between", delay) as base_url,
        tempfile.TemporaryDirectory() as workdir,
    ):
        asyncio.run(paced(args, base_url, workdir))


if __name__ == "__main__":
    main()
