"""Benchmark: 50 concurrent answers in one Telegram group, and 50 private chats at once.

Run: `.venv/bin/python -m bench.telegram_load [--answers N] [--scenario group|private|both]
[--words N] [--delay S]`.

Each scenario starts the real service (`python -m bots run`) against a fresh fake Bot API
(tests.fakes.telegram_server, with Telegram's limits: ~1 message/s per chat, 20/min per group,
30/s per bot) and a fake LLM whose answers stream for a few seconds (`--words` words,
`--delay` seconds apart), sends N user messages at once, and waits until every answer's
complete final text is visible. It prints the 429 count, the API calls per answer (write calls
total and by method; typing separately) and the median and p95 of (time the complete text
became visible on the fake - the LLM's last token of that answer), both time.time().
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench._common import machine, median, percentile
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.service_process import ThreadlineProcess
from tests.fakes.telegram_server import WRITE_METHODS, FakeTelegram

GROUP_ID = -1001999000111


@dataclass
class Result:
    """What one scenario measured."""

    name: str
    answers: int
    wall: float
    rate_limited: int
    writes: Counter[str]
    typing: int
    lags: list[float]
    failed_calls: int


def _env(tg: FakeTelegram, llm: FakeOpenAI, directory: Path) -> dict[str, str]:
    return {
        **tg.env(),
        "OPENAI_BASE_URL": llm.base_url,
        "OPENAI_API_KEY": "sk-bench",
        "THREADLINE_MODEL": "fake-model",
        "THREADLINE_MAX_RETRIES": "0",
        "THREADLINE_LOG_LEVEL": "WARNING",
        "DATABASE_URL": f"sqlite+aiosqlite:///{directory}/bench.db",
        "THREADLINE_USER_HASH_KEY": "bench-user-hash-key-0123456789abcdef",
    }


def _question(i: int, words: int) -> str:
    return f"question {i} " + " ".join(f"w{i}x{j}" for j in range(words))


async def _scenario(name: str, answers: int, words: int, delay: float) -> Result:
    with tempfile.TemporaryDirectory() as directory:
        async with FakeOpenAI() as llm, FakeTelegram() as tg:
            users = [tg.user(f"User{i}") for i in range(answers)]
            if name == "group":
                tg.group(GROUP_ID, "Bench group")
                chats = [GROUP_ID] * answers
            else:
                chats = [tg.private_chat(user) for user in users]
            async with ThreadlineProcess(Path(directory), _env(tg, llm, Path(directory))) as proc:
                await proc.wait_until(lambda: bool(tg.commands), within=60, what="start")
                llm.script(*[Reply(delay_between=delay) for _ in range(answers)])
                expected: dict[str, tuple[int, int | None]] = {}
                started = time.monotonic()
                for i, (chat, user) in enumerate(zip(chats, users, strict=True)):
                    text = _question(i, words)
                    sent = tg.mention(text) if name == "group" else text
                    message_id = tg.send(chat, user, sent)
                    expected[f"echo: {text}"] = (chat, message_id if name == "group" else None)

                def visible() -> dict[str, float]:
                    found: dict[str, float] = {}
                    by_text = {m.text: m for m in tg.bot_messages() if m.text in expected}
                    for answer, message in by_text.items():
                        found[answer] = message.changed_at
                    return found

                await proc.wait_until(
                    lambda: len(visible()) == answers, within=900, what="every answer"
                )
                wall = time.monotonic() - started
                shown = visible()
                last_tokens = {}
                for request in llm.chat_requests:
                    said = request.json["messages"][-1]["content"]
                    last_tokens[f"echo: {said}"] = request.last_token_at
                lags = [
                    shown[answer] - token
                    for answer, token in last_tokens.items()
                    if token is not None and answer in shown
                ]
                writes = Counter(
                    c.method for c in tg.calls if c.method in WRITE_METHODS and c.status == 200
                )
                typing = len(tg.calls_of("sendChatAction", ok=True))
                failed = sum(1 for c in tg.calls if c.status != 200)
                return Result(name, answers, wall, tg.rate_limited, writes, typing, lags, failed)


def _report(result: Result) -> None:
    total = sum(result.writes.values())
    n = result.answers
    title = (
        f"{n} concurrent answers in one group"
        if result.name == "group"
        else f"{n} private chats at once"
    )
    print(f"\n{title}: all complete after {result.wall:.1f}s")
    print(f"  429 responses:            {result.rate_limited}")
    print(f"  failed calls (any):       {result.failed_calls}")
    print(f"  write calls per answer:   {total / n:.2f} ({total} in all)")
    for method in sorted(result.writes):
        print(f"    {method:<22} {result.writes[method] / n:.2f} per answer")
    print(f"    {'sendChatAction':<22} {result.typing / n:.2f} per answer (typing, not a write)")
    print(
        f"  last token -> complete text visible: median {median(result.lags):.2f}s, "
        f"p95 {percentile(result.lags, 0.95):.2f}s, max {max(result.lags):.2f}s "
        f"({len(result.lags)} answers)"
    )


async def _main(args: argparse.Namespace) -> None:
    print(machine())
    print(
        f"answers stream {args.words + 3} words, {args.delay:.2f}s apart "
        f"(about {(args.words + 3) * args.delay:.1f}s each)"
    )
    scenarios = ["group", "private"] if args.scenario == "both" else [args.scenario]
    for name in scenarios:
        _report(await _scenario(name, args.answers, args.words, args.delay))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=50)
    parser.add_argument("--scenario", choices=("group", "private", "both"), default="both")
    parser.add_argument("--words", type=int, default=20, help="words in each question/answer")
    parser.add_argument("--delay", type=float, default=0.15, help="seconds between LLM deltas")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
