"""Benchmark: N concurrent answers in one Slack workspace through `threadline run` (Socket Mode).

Run: `.venv/bin/python -m bench.slack_load [--answers 100] [--channels 10] [--words 30]
[--delay 0.1] [--no-native]`.

The real service runs as a child process (`python -m bots run`) against a fake Slack (Web API
+ Socket Mode, Slack's per-workspace tiers with 429s) and a fake OpenAI server, both in this
process on 127.0.0.1. N mentions arrive at once in N threads spread over several channels; each
answer streams for a few seconds (`--words` words, `--delay` seconds apart). The service paces
every Slack method at Slack's real rates (chat.startStream/stopStream ~20/min, chat.update
~50/min, chat.postMessage ~1/s per channel), so N answers take minutes, not seconds.

Prints the 429 count, Slack API calls per answer (total, writes, and by method), the median
and p95 of (time the complete final text became visible on the fake - the LLM's last token of
that answer), both wall-clock `time.time()`, and the service's CPU time per answer (user +
system seconds of the child process from its first event to the last final text, read from
/proc). With `--runs R` every number is printed per run and as the median of the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import tempfile
import time
from pathlib import Path

from bench._common import machine, median, percentile
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.service_process import ThreadlineProcess
from tests.fakes.slack_server import WRITE_METHODS, FakeSlack

_INDEX = re.compile(r"question (\d+) ")


def _env(slack: FakeSlack, llm: FakeOpenAI, directory: Path, native: bool) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": llm.base_url,
        "OPENAI_API_KEY": "sk-bench",
        "THREADLINE_MODEL": "fake-model",
        "THREADLINE_MAX_RETRIES": "0",
        "THREADLINE_USER_HASH_KEY": "bench-user-hash-key",
        "DATABASE_URL": f"sqlite+aiosqlite:///{directory}/bench.db",
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_APP_TOKEN": slack.app_token,
        "SLACK_API_URL": slack.api_url,
        "SLACK_NATIVE_STREAMING": "true" if native else "false",
        # the platform's limits are measured here, not the per-user ones
        "THREADLINE_USER_RATE": "0",
        "THREADLINE_USER_CONCURRENT_ANSWERS": "1000",
        "THREADLINE_USER_QUEUE": "1000",
    }


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(
    answers: int, channels: int, words: int, delay: float, native: bool
) -> dict[str, float]:
    users = {f"U{n}": f"User {n}" for n in range(10)}
    async with FakeSlack(users=users) as slack, FakeOpenAI() as llm:
        llm.script(*[Reply(delay_between=delay) for _ in range(answers)])
        with tempfile.TemporaryDirectory() as directory:
            async with ThreadlineProcess(
                Path(directory), _env(slack, llm, Path(directory), native)
            ) as service:
                await service.wait_until(lambda: bool(slack.sockets), within=30, what="socket")
                expected: dict[int, tuple[str, str, str]] = {}
                cpu_before = cpu_seconds(service.pid)
                started = time.time()
                for index in range(answers):
                    channel = f"C{index % channels:03d}"
                    body = " ".join(f"w{index}.{n}" for n in range(words))
                    event = slack.message(
                        channel,
                        f"<@{slack.bot_user_id}> question {index} {body}",
                        user=f"U{index % 10}",
                    )
                    expected[index] = (channel, event["ts"], f"echo: question {index} {body}")
                    await slack.send_event(event)

                def complete(index: int) -> bool:
                    channel, ts, text = expected[index]
                    return slack.thread_final(channel, ts) and (
                        "".join(slack.thread_text(channel, ts)) == text
                    )

                await service.wait_until(
                    lambda: all(complete(index) for index in expected),
                    within=900,
                    what="every answer complete",
                )
                elapsed = time.time() - started
                cpu = cpu_seconds(service.pid) - cpu_before
        last_token: dict[int, float] = {}
        for request in llm.chat_requests:
            content = request.json["messages"][-1]["content"]
            found = _INDEX.search(content)
            if found and request.last_token_at is not None:
                last_token[int(found.group(1))] = request.last_token_at
        lags = []
        for index, (channel, ts, _) in expected.items():
            messages = slack.thread_messages(channel, ts)
            visible_at = max(message.history[-1][0] for message in messages)
            lags.append(visible_at - last_token[index])

    counts = slack.method_counts()
    writes = sum(n for method, n in counts.items() if method in WRITE_METHODS)
    print(f"all {answers} final texts complete after {elapsed:.1f} s")
    print(f"429 responses: {slack.rate_limited} {dict(slack.rate_limited_by_method)}")
    total = sum(counts.values()) - counts["auth.test"] - counts["apps.connections.open"]
    print(f"API calls per answer: {total / answers:.2f} (writes {writes / answers:.2f})")
    for method, count in sorted(counts.items(), key=lambda item: -item[1]):
        print(f"  {method:<40} {count:>5}  {count / answers:.2f}/answer")
    streamed = sum(1 for m in slack.messages.values() if m.markdown)
    print(f"messages written as markdown_text (native or switched): {streamed}")
    print(
        "last token -> complete final text visible: "
        f"median {median(lags):.2f} s, p95 {percentile(lags, 0.95):.2f} s, "
        f"max {max(lags):.2f} s"
    )
    print(f"service CPU: {cpu:.2f} s, {cpu / answers * 1000:.1f} ms per answer")
    return {
        "429s": float(slack.rate_limited),
        "calls/answer": total / answers,
        "writes/answer": writes / answers,
        "lag p50 s": median(lags),
        "lag p95 s": percentile(lags, 0.95),
        "CPU ms/answer": cpu / answers * 1000,
    }


async def run_all(
    runs: int, answers: int, channels: int, words: int, delay: float, native: bool
) -> None:
    print(machine())
    print(
        f"{answers} concurrent answers in one workspace, {channels} channels, "
        f"{words + 3} words each streamed {delay * 1000:.0f} ms apart, "
        f"native streaming {'on' if native else 'off'}, {runs} run(s)"
    )
    results = []
    for number in range(runs):
        print(f"-- run {number + 1}")
        results.append(await run(answers, channels, words, delay, native))
    print(f"-- median of {runs} run(s)")
    for name in results[0]:
        print(f"  {name:<16} {median([r[name] for r in results]):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=100)
    parser.add_argument("--channels", type=int, default=10)
    parser.add_argument("--words", type=int, default=30)
    parser.add_argument("--delay", type=float, default=0.1)
    parser.add_argument("--no-native", action="store_true")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(
        run_all(args.runs, args.answers, args.channels, args.words, args.delay, not args.no_native)
    )


if __name__ == "__main__":
    main()
