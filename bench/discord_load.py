"""Benchmark: N concurrent answers in one Discord channel through the real `threadline run`.

Run: `.venv/bin/python -m bench.discord_load [--answers 20 50] [--runs 3] [--separate]
[--words 40] [--delay 0.1]`.

A fake Discord (REST + gateway, Discord's observed budgets: 5 message writes per 5 s per
channel, by default in ONE bucket shared by creates and edits (`--separate`: a bucket for
creates and another for edits), 50 requests per second per bot) and a fake OpenAI server run in
this process; the service runs as a child process (`python -m bots run`) pointed at both. N
users mention the bot in one channel at once; each answer streams `--words` words, one every
`--delay` seconds. When every answer's complete final text is visible on the fake it prints,
per run, the 429 count, the API calls per answer, and the median and p95 of the final-text lag
(time the complete final text became visible on the fake - the LLM's last token of that answer,
both `time.time()`), then the medians over `--runs` runs of each N.

Next to it, the bound the budget allows: every answer needs at least one write made after its
last token (K = 1: its final text), and the channel's bucket takes L writes per window of R
seconds (a window opens at the first write after the last one closed, as Discord's do). Writing
those N final texts as early as that allows, from the measured last-token times, gives the
least possible lags (`bound`); streaming costs more writes (a first post at the first token, so
K = 2 for an answer that starts showing before it ends), so the bot cannot reach it exactly.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench._common import machine, median, percentile
from tests.fakes.discord_server import FakeDiscord, FakeMessage
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.service_process import ThreadlineProcess

TOKEN = "bench-discord-token-0123456789"
LIMIT = 5  # writes per window per channel bucket (Discord's observed budget)
WINDOW = 5.0  # seconds


@dataclass(frozen=True, slots=True)
class Outcome:
    """One run's numbers."""

    answers: int
    rate_limited: int
    elapsed: float
    creates: int
    edits: int
    lag_p50: float
    lag_p95: float
    lag_max: float
    bound_p50: float
    bound_p95: float
    bound_max: float


def visible_at(parts: list[FakeMessage]) -> float:
    """When the last part reached its final content (and stayed there)."""
    latest = 0.0
    for part in parts:
        final = part.content
        since = part.history[-1][0]
        for at, content in reversed(part.history):
            if content != final:
                break
            since = at
        latest = max(latest, since)
    return latest


def bound_lags(token_times: list[float], limit: int, window: float) -> list[float]:
    """Least lags if each answer got one write after its last token, `limit` per window.

    Fixed windows as Discord keeps them: a window opens at the first write after the previous
    one closed and takes `limit` writes until `window` seconds later. Writes go in order of
    last-token time, each as early as the budget allows (earliest-first is optimal here).
    """
    lags = []
    opened = last = -math.inf
    used = 0
    for token_at in sorted(token_times):
        at = max(token_at, last)  # in order: never before the write before it
        if at >= opened + window:
            opened, used = at, 0
        elif used >= limit:
            at = opened + window
            opened, used = at, 0
        used += 1
        last = at
        lags.append(at - token_at)
    return lags


async def run(answers: int, words: int, delay: float, within: float, shared: bool) -> Outcome:
    fake_discord = FakeDiscord(
        token=TOKEN,
        message_limit=LIMIT,
        message_period=WINDOW,
        shared_message_bucket=shared,
    )
    async with fake_discord as fake, FakeOpenAI() as llm:
        llm.script(*[Reply(delay_between=delay) for _ in range(answers)])
        with tempfile.TemporaryDirectory() as directory:
            env = {
                "OPENAI_BASE_URL": llm.base_url,
                "OPENAI_API_KEY": "sk-bench",
                "THREADLINE_MODEL": "fake-model",
                "THREADLINE_MAX_RETRIES": "0",
                "DISCORD_BOT_TOKEN": TOKEN,
                "DISCORD_API_URL": fake.api_url,
                "DATABASE_URL": f"sqlite+aiosqlite:///{directory}/bench.db",
                "THREADLINE_USER_HASH_KEY": "bench-user-hash-key-0123456789abcdef",
                "THREADLINE_LOG_LEVEL": "WARNING",
                "THREADLINE_USER_RATE": "0",  # one author asks every question
                "THREADLINE_USER_CONCURRENT_ANSWERS": "1000",
                "THREADLINE_USER_QUEUE": "1000",
            }
            async with ThreadlineProcess(Path(directory), env) as proc:
                await proc.wait_until(
                    lambda: fake.ready_shards == 1 and bool(fake.commands),
                    within=30,
                    what="the bot to connect",
                )
                filler = " ".join(f"w{k}" for k in range(words - 2))
                expected: dict[str, str] = {}
                started = time.time()
                for i in range(answers):
                    text = f"q{i} {filler}"
                    mid = await fake.user_message(fake.channel_id, text, mention_bot=True)
                    expected[mid] = f"echo: {text}"
                await proc.wait_until(
                    lambda: all(fake.answer_text(m) == t for m, t in expected.items()),
                    within=within,
                    what="every answer complete",
                )
                finished = time.time()
    last_token = {r.json["messages"][-1]["content"]: r.last_token_at for r in llm.chat_requests}
    lags = []
    token_times = []
    for mid, text in expected.items():
        token_at = last_token[text.removeprefix("echo: ")]
        assert token_at is not None
        token_times.append(token_at)
        lags.append(visible_at(fake.answer_parts(mid)) - token_at)
    bound = bound_lags(token_times, LIMIT, WINDOW)
    writes = fake.writes()
    by_method = Counter(f"{c.method} {c.route}" for c in fake.calls if c.at >= started)
    outcome = Outcome(
        answers=answers,
        rate_limited=fake.rate_limited,
        elapsed=finished - started,
        creates=sum(c.method == "POST" for c in writes),
        edits=sum(c.method == "PATCH" for c in writes),
        lag_p50=median(lags),
        lag_p95=percentile(lags, 0.95),
        lag_max=max(lags),
        bound_p50=median(bound),
        bound_p95=percentile(bound, 0.95),
        bound_max=max(bound),
    )
    total = sum(by_method.values())
    o = outcome
    print(
        f"  {answers} answers: complete after {o.elapsed:.1f} s, 429s {o.rate_limited}, "
        f"writes/answer {(o.creates + o.edits) / answers:.2f} "
        f"({o.creates} creates, {o.edits} edits), all calls/answer {total / answers:.2f}; "
        f"lag p50 {o.lag_p50:.2f} s, p95 {o.lag_p95:.2f} s, max {o.lag_max:.2f} s "
        f"(bound p50 {o.bound_p50:.2f}, p95 {o.bound_p95:.2f}, max {o.bound_max:.2f}); "
        f"last tokens {min(token_times) - started:.1f}..{max(token_times) - started:.1f} s "
        "after the first question",
        flush=True,
    )
    for route, count in sorted(by_method.items(), key=lambda item: -item[1]):
        print(f"      {count / answers:6.2f}  {route}  ({count})")
    return outcome


async def main_async(
    sizes: list[int], runs: int, words: int, delay: float, within: float, shared: bool
) -> int:
    print(machine())
    buckets = "ONE shared create+edit bucket" if shared else "separate create and edit buckets"
    print(
        f"discord load: answers in one channel with {buckets} of {LIMIT} writes per "
        f"{WINDOW:.0f} s; {words} words per answer, one every {delay:.2f} s "
        f"(about {words * delay:.1f} s of streaming per answer); {runs} run(s) each"
    )
    outcomes: dict[int, list[Outcome]] = {size: [] for size in sizes}
    for run_index in range(runs):
        print(f"run {run_index + 1}:")
        for size in sizes:
            outcomes[size].append(await run(size, words, delay, within, shared))
    print(f"medians over {runs} run(s):")
    for size, results in outcomes.items():
        least = (math.ceil(size / LIMIT) - 1) * WINDOW
        print(
            f"  {size} answers: 429s {median([r.rate_limited for r in results]):.0f} "
            f"(max {max(r.rate_limited for r in results)}), "
            f"complete after {median([r.elapsed for r in results]):.1f} s, "
            f"lag p50 {median([r.lag_p50 for r in results]):.2f} s, "
            f"p95 {median([r.lag_p95 for r in results]):.2f} s, "
            f"max {median([r.lag_max for r in results]):.2f} s; "
            f"writes/answer {median([(r.creates + r.edits) / size for r in results]):.2f}"
        )
        print(
            f"    bound (K=1 write per answer after its last token, {LIMIT} per {WINDOW:.0f} s): "
            f"lag p50 {median([r.bound_p50 for r in results]):.2f} s, "
            f"p95 {median([r.bound_p95 for r in results]):.2f} s, "
            f"max {median([r.bound_max for r in results]):.2f} s "
            f"(the last of {size} final texts at least {least:.0f} s after the first)"
        )
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--words", type=int, default=40)
    parser.add_argument("--delay", type=float, default=0.1)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument(
        "--separate", action="store_true", help="creates and edits in separate buckets"
    )
    args = parser.parse_args()
    raise SystemExit(
        asyncio.run(
            main_async(
                args.answers, args.runs, args.words, args.delay, args.timeout, not args.separate
            )
        )
    )


if __name__ == "__main__":
    main()
