"""End to end: long answers, refused formatting, failures, webhook secrets and the token."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from tests.adapters.telegram.conftest import tg_env
from tests.fakes.openai_server import FakeOpenAI, Fault, Reply
from tests.fakes.service_process import ThreadlineProcess
from tests.fakes.telegram_server import FakeTelegram, Message, utf16_len


def _long_answer() -> tuple[str, list[str]]:
    """About 12,000 characters of Markdown: sections of prose and Python code blocks."""
    parts: list[str] = []
    code_lines: list[str] = []
    for section in range(6):
        parts.append(f"## Section {section} ✨\n")
        parts.append(
            " ".join(
                f"Sentence {section}.{i} explains a **detail** of the 🧪 design." for i in range(8)
            )
            + "\n"
        )
        lines = [f"print('section {section} line {j}')  # step {j} of the loop" for j in range(30)]
        code_lines += lines
        parts.append("```python\n" + "\n".join(lines) + "\n```\n")
    parts.append("That is all.")
    return "\n".join(parts), code_lines


def _covered_by_pre(message: Message, line: str) -> bool:
    index = message.text.find(line)
    if index < 0:
        return False
    start = utf16_len(message.text[:index])
    end = start + utf16_len(line)
    return any(
        e["type"] == "pre" and e["offset"] <= start and end <= e["offset"] + e["length"]
        for e in message.entities
    )


async def test_long_answer_is_split_and_refused_formatting_is_resent_plain(
    tmp_path: Path, fake_llm: FakeOpenAI, fake_tg: FakeTelegram
) -> None:
    tg, llm = fake_tg, fake_llm
    alice = tg.user("Alice")
    chat = tg.private_chat(alice)
    group = tg.group(-1001000000004, "Formats")
    text, code_lines = _long_answer()
    assert 11_000 <= len(text) <= 13_000
    async with ThreadlineProcess(tmp_path, tg_env(tg, llm, tmp_path)) as proc:
        await proc.wait_until(lambda: bool(tg.commands), what="the bot to start")
        llm.script(Reply(text=text))
        tg.send(chat, alice, "write a long answer")

        def complete() -> bool:
            shown = [m for m in tg.bot_messages(chat)]
            return bool(shown) and shown[-1].text.endswith("That is all.")

        await proc.wait_until(complete, within=40, what="the long answer")
        parts = tg.bot_messages(chat)
        assert len(parts) >= 3
        assert all(utf16_len(m.text) <= 4096 for m in parts)
        assert [c for c in tg.calls if c.status != 200] == []
        for line in code_lines:  # every code line is shown once, inside a code block
            holders = [m for m in parts if line in m.text]
            assert len(holders) == 1, line
            assert _covered_by_pre(holders[0], line), line
        assert sum(1 for m in parts for e in m.entities if e["type"] == "bold") >= 40

        # Telegram refuses an entity type: the message is sent again as plain text
        tg.unsupported_entity_types = frozenset({"bold"})
        llm.script(Reply(text="Some **bold** claim, then more words."))
        question = tg.send(group, alice, tg.mention("format please"))
        await proc.wait_until(
            lambda: any(
                m.text == "Some bold claim, then more words."
                for m in tg.replies_to(group, question)
            ),
            what="the plain-text answer",
        )
        refused = [c for c in tg.calls if c.status == 400]
        assert refused and all("can't parse entities" in (c.description or "") for c in refused)
        assert all(m.entities == [] for m in tg.replies_to(group, question))
        # the same in a private chat's draft
        llm.script(Reply(text="Private **bold** words here."))
        tg.send(chat, alice, "again")
        await proc.wait_until(
            lambda: any(m.text == "Private bold words here." for m in tg.bot_messages(chat)),
            what="the plain-text private answer",
        )
        assert tg.rate_limited == 0
    assert tg.token not in proc.output


async def test_failures_end_answers_quietly_and_429_is_honoured(
    tmp_path: Path, fake_llm: FakeOpenAI, fake_tg: FakeTelegram
) -> None:
    tg, llm = fake_tg, fake_llm
    users = [tg.user(name) for name in ("Ann", "Ben", "Cy", "Di", "Ed")]
    ann, ben, cy, di, ed = (tg.private_chat(u) for u in users)
    group = tg.group(-1001000000005, "Deletions")
    async with ThreadlineProcess(tmp_path, tg_env(tg, llm, tmp_path)) as proc:
        await proc.wait_until(lambda: bool(tg.commands), what="the bot to start")

        # the LLM fails mid-answer: the partial text stays, with a short note
        llm.script(
            Fault.drop_mid_stream(after_chunks=3, reply=Reply(text="alpha beta gamma delta"))
        )
        tg.send(ann, users[0], "break please")
        await proc.wait_until(
            lambda: any("stopped early" in m.text for m in tg.bot_messages(ann)),
            what="the partial answer",
        )
        [partial] = tg.bot_messages(ann)
        assert partial.text.startswith("alpha beta gamma")

        # a chat that blocked the bot: the answer ends quietly, the others go on
        tg.block(ben)
        tg.send(ben, users[1], "are you there?")
        await proc.wait_until(
            lambda: any(c.status == 403 for c in tg.calls), what="the blocked write"
        )
        # a message deleted while its answer streams: the answer stops there
        llm.script(Reply(text="word " * 40 + "end.", delay_between=0.1))
        question = tg.send(group, users[2], tg.mention("stream slowly"))
        await proc.wait_until(lambda: bool(tg.replies_to(group, question)), what="first post")
        tg.delete(group, tg.replies_to(group, question)[0].message_id)
        await proc.wait_until(
            lambda: any("to edit not found" in (c.description or "") for c in tg.calls),
            within=20,
            what="the refused edit",
        )
        # drafts not supported by the server: sendMessage and edits instead, from now on
        tg.drafts_supported = False
        llm.script(Reply(text="growing " * 20 + "done.", delay_between=0.1))
        tg.send(cy, users[2], "no drafts here")
        await proc.wait_until(
            lambda: any(m.text.endswith("done.") for m in tg.bot_messages(cy)),
            what="the answer without drafts",
        )
        [answer] = tg.bot_messages(cy)
        assert answer.edits >= 1
        # Telegram's per-chat limit is tighter than expected: 429s pause, the text arrives
        tg.chat_rate, tg.chat_burst = 0.3, 1.0
        llm.script(Reply(text="paced " * 30 + "finished.", delay_between=0.1))
        tg.send(di, users[3], "rate limit me")
        await proc.wait_until(
            lambda: any(m.text.endswith("finished.") for m in tg.bot_messages(di)),
            within=30,
            what="the rate-limited answer",
        )
        assert tg.rate_limited > 0
        tg.send(ed, users[4], "still alive?")
        await proc.wait_until(
            lambda: any(m.text == "echo: still alive?" for m in tg.bot_messages(ed)),
            what="a later answer",
        )
        assert proc.running
    assert "Traceback" not in proc.output
    assert tg.token not in proc.output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_webhook_refuses_a_wrong_secret_and_the_token_never_shows(
    tmp_path: Path, fake_llm: FakeOpenAI, fake_tg: FakeTelegram
) -> None:
    tg, llm = fake_tg, fake_llm
    port = _free_port()
    secret = "hook-secret_123"
    url = f"http://127.0.0.1:{port}/telegram/hook"
    env = tg_env(
        tg,
        llm,
        tmp_path,
        TELEGRAM_WEBHOOK_URL=url,
        TELEGRAM_WEBHOOK_SECRET=secret,
        TELEGRAM_WEBHOOK_HOST="127.0.0.1",
        TELEGRAM_WEBHOOK_PORT=str(port),
        THREADLINE_LOG_LEVEL="DEBUG",
    )
    alice = tg.user("Alice")
    chat = tg.private_chat(alice)
    async with ThreadlineProcess(tmp_path, env) as proc:
        await proc.wait_until(lambda: tg.webhook_url == url, what="setWebhook")
        assert tg.webhook_secret == secret
        tg.send(chat, alice, "forged question", deliver=False)
        forged = tg.last_update
        assert await tg.post_webhook(forged, secret="wrong-secret") == 401
        assert await tg.post_webhook(forged, secret=None) == 401
        tg.send(chat, alice, "real question")  # delivered with the right secret
        await proc.wait_until(
            lambda: any(m.text == "echo: real question" for m in tg.bot_messages(chat)),
            what="the webhook answer",
        )
        assert tg.webhook_deliveries == [200]
        assert len(llm.chat_requests) == 1  # the forged updates did nothing
        assert tg.calls_of("getUpdates") == []
    assert tg.token not in proc.output
    assert secret not in proc.output  # setWebhook's secret_token is logged at DEBUG, masked
    assert "/bot***" in proc.output  # URLs with the token were logged, masked


async def test_a_refused_token_stops_the_channel_without_showing_it(
    tmp_path: Path, fake_llm: FakeOpenAI, fake_tg: FakeTelegram
) -> None:
    wrong = "7000001:AAH-this-token-is-not-the-right-one-42"
    env = tg_env(
        fake_tg, fake_llm, tmp_path, TELEGRAM_BOT_TOKEN=wrong, THREADLINE_LOG_LEVEL="DEBUG"
    )
    proc = ThreadlineProcess(tmp_path, env)
    await proc.start()
    try:
        for _ in range(1500):  # the process exits by itself
            if not proc.running:
                break
            await asyncio.sleep(0.02)
        assert not proc.running, proc.output
    finally:
        code = await proc.stop()
    assert fake_tg.unauthorized == 1
    assert "TELEGRAM_BOT_TOKEN" in proc.output
    assert wrong not in proc.output
    assert code != 0
