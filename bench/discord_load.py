"""Benchmark: N concurrent answers in one Discord channel through the real `threadline run`.

Run: `.venv/bin/python -m bench.discord_load [--answers 50] [--words 40] [--delay 0.1]`.

A fake Discord (REST + gateway, Discord's observed budgets: 5 message creates and 5 edits per
5 s per channel, 50 requests per second per bot) and a fake OpenAI server run in this process;
the service runs as a child process (`python -m bots run`) pointed at both. N users mention the
bot in one channel at once; each answer streams `--words` words, one every `--delay` seconds.
When every answer's complete final text is visible on the fake it prints the 429 count, the API
calls per answer (writes, and every call by method and route), and the median and p95 of
(time the complete final text became visible on the fake - the LLM's last token of that
answer), both `time.time()`.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench._common import machine, median, percentile
from tests.fakes.discord_server import FakeDiscord, FakeMessage
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.service_process import ThreadlineProcess

TOKEN = "bench-discord-token-0123456789"


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


async def run(answers: int, words: int, delay: float, within: float) -> int:
    async with FakeDiscord(token=TOKEN) as fake, FakeOpenAI() as llm:
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
    for mid, text in expected.items():
        token_at = last_token[text.removeprefix("echo: ")]
        assert token_at is not None
        lags.append(visible_at(fake.answer_parts(mid)) - token_at)
    writes = fake.writes()
    by_method = Counter(f"{c.method} {c.route}" for c in fake.calls if c.at >= started)
    print(machine())
    print(
        f"discord load: {answers} concurrent answers in one channel, {words} words each, "
        f"one every {delay:.2f} s (about {words * delay:.1f} s of streaming per answer)"
    )
    print(f"  all complete after {finished - started:.1f} s")
    print(f"  429 responses: {fake.rate_limited}")
    print(
        f"  writes per answer: {len(writes) / answers:.2f} "
        f"({sum(c.method == 'POST' for c in writes)} creates, "
        f"{sum(c.method == 'PATCH' for c in writes)} edits)"
    )
    total = sum(by_method.values())
    print(f"  all API calls per answer: {total / answers:.2f}")
    for route, count in sorted(by_method.items(), key=lambda item: -item[1]):
        print(f"    {count / answers:6.2f}  {route}  ({count})")
    print(
        f"  last token -> complete text visible: median {median(lags):.2f} s, "
        f"p95 {percentile(lags, 0.95):.2f} s, max {max(lags):.2f} s"
    )
    print(
        "  (Discord allows about 5 message creates per 5 s per channel and threadline paces "
        f"creates at 0.8/s, so {answers} answers in one channel need about "
        f"{answers / 0.8:.0f} s of creates: the later answers wait for their slot)"
    )
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=50)
    parser.add_argument("--words", type=int, default=40)
    parser.add_argument("--delay", type=float, default=0.1)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    raise SystemExit(asyncio.run(run(args.answers, args.words, args.delay, args.timeout)))


if __name__ == "__main__":
    main()
