"""End to end through `threadline run`: paced streaming, splitting, mentions and failures."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from adapters.discord.rest import NO_MENTIONS
from tests.adapters.discord.conftest import TOKEN, running
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.openai_server import FakeOpenAI, Fault, Reply

# 50 answers in one channel take about 60 s at Discord's per-channel budget of 5 creates per
# 5 s; `python -m bench.discord_load` runs the same scenario and reports its latencies.
CONCURRENT = 50
ONE_AUTHOR_UNLIMITED = {
    "THREADLINE_USER_RATE": "0",
    "THREADLINE_USER_CONCURRENT_ANSWERS": "1000",
    "THREADLINE_USER_QUEUE": "1000",
}
FENCE = re.compile(r"^```", re.MULTILINE)


@pytest.mark.parametrize("shared", [False, True], ids=["separate-buckets", "shared-bucket"])
async def test_concurrent_answers_in_one_channel_without_429(
    tmp_path: Path, fake_llm: FakeOpenAI, shared: bool
) -> None:
    # Discord may count creates and edits of a channel in separate buckets or in ONE bucket;
    # only its headers tell. Either way the bot stays at zero 429s.
    async with FakeDiscord(token=TOKEN, shared_message_bucket=shared) as fake:
        fake_llm.script(*[Reply(delay_between=0.15) for _ in range(CONCURRENT)])
        # one author asks all 50: the per-user limits are not what this test measures
        async with running(tmp_path, fake, fake_llm, **ONE_AUTHOR_UNLIMITED) as proc:
            questions = {
                await fake.user_message(
                    fake.channel_id,
                    f"question {i} about pacing many answers in one busy channel",
                    mention_bot=True,
                ): f"echo: question {i} about pacing many answers in one busy channel"
                for i in range(CONCURRENT)
            }
            await proc.wait_until(
                lambda: all(fake.answer_text(mid) == text for mid, text in questions.items()),
                within=150,
                what="every answer complete",
            )
    assert fake.rate_limited == 0
    assert all(fake.answer_text(mid) == text for mid, text in questions.items())
    assert all(len(fake.answer_parts(mid)) == 1 for mid in questions)
    creates = fake.calls_to("POST", "/channels/{channel_id}/messages")
    assert len(creates) == CONCURRENT
    # the channel's create budget was kept: never more than 5 in any 5 s
    times = sorted(c.at for c in creates)
    assert all(later - earlier >= 4.0 for earlier, later in zip(times, times[5:], strict=False))
    if shared:  # and so was the one budget of creates and edits together
        writes = sorted(c.at for c in fake.writes())
        assert all(b - a >= 4.0 for a, b in zip(writes, writes[5:], strict=False))


async def test_a_create_whose_response_was_lost_shows_one_message(
    tmp_path: Path, fake_discord: FakeDiscord, fake_llm: FakeOpenAI
) -> None:
    # Discord applies the first create of the answer, then the connection drops before the
    # response: the retry must get that message back (nonce), not post a second one.
    fake = fake_discord
    words = " ".join(f"word{i}" for i in range(30))
    fake_llm.script(Reply(text=words, delay_between=0.1))
    async with running(tmp_path, fake, fake_llm) as proc:
        fake.drop_responses(1, "close")
        question = await fake.user_message(fake.channel_id, "tell me", mention_bot=True)
        await proc.wait_until(
            lambda: any(m.content == words for m in fake.bot_messages()),
            within=60,
            what="the final text",
        )
    creates = fake.calls_to("POST", "/channels/{channel_id}/messages")
    assert creates[0].dropped and len(creates) >= 2
    assert [m.content for m in fake.bot_messages()] == [words]  # one message, complete
    assert fake.answer_text(question) == words


def long_answer() -> str:
    """About 12,000 characters of prose and code; one code block is longer than a message."""
    sections = []
    for n in range(7):
        prose = " ".join(f"Paragraph {n} sentence {k} explains the design." for k in range(10))
        lines = "\n".join(f"value_{n}_{k} = compute({n}, {k})  # step {k}" for k in range(20))
        sections.append(f"## Part {n}\n\n{prose}\n\n```python\n{lines}\n```\n")
    big = "\n".join(f"big_{k} = compute(99, {k})  # a long block" for k in range(80))
    sections.insert(4, f"Now a block longer than one message:\n\n```python\n{big}\n```\n")
    text = "\n".join(sections)
    assert 11_000 < len(text) < 13_000
    return text


def _code_lines_inside_fences(part: str) -> bool:
    inside = False
    for line in part.split("\n"):
        if line.startswith("```"):
            inside = not inside
        elif "= compute(" in line and not inside:
            return False
    return not inside


async def test_long_answer_is_split_at_2000_without_cutting_code(
    tmp_path: Path, fake_discord: FakeDiscord, fake_llm: FakeOpenAI
) -> None:
    fake = fake_discord
    answer = long_answer()
    chunks = [answer[i : i + 150] for i in range(0, len(answer), 150)]
    fake_llm.script(Reply(chunks=chunks, delay_between=0.01))
    async with running(tmp_path, fake, fake_llm) as proc:
        question = await fake.user_message(fake.channel_id, "write a lot", mention_bot=True)
        await proc.wait_until(
            lambda: (
                len(fake.answer_parts(question)) >= 6
                and _normalised(fake.answer_text(question)) == _normalised(answer)
            ),
            within=60,
            what="the whole long answer",
        )
        parts = [m.content for m in fake.answer_parts(question)]
    assert fake.rate_limited == 0
    assert all(len(part) <= 2000 for part in parts)
    assert all(_code_lines_inside_fences(part) for part in parts), "a code block was cut open"
    assert all(len(FENCE.findall(part)) % 2 == 0 for part in parts)
    # the block longer than a message was closed and reopened with its language
    assert sum(part.startswith("```python\nbig_") for part in parts) >= 1
    # 400 for over-long content would have shown as a failed write
    assert all(c.status < 400 for c in fake.writes())


def _normalised(text: str) -> str:
    """The text without fence lines and whitespace: what must survive splitting unchanged."""
    return re.sub(r"\s+", "", FENCE.sub("", re.sub(r"^```\w*$", "", text, flags=re.M)))


async def test_model_mentions_never_ping(
    tmp_path: Path, fake_discord: FakeDiscord, fake_llm: FakeOpenAI
) -> None:
    fake = fake_discord
    chunks = [
        "Attention @everyone ",
        "and @here, ",
        f"ping <@{fake.other_user.id}> ",
        f"and role <@&{fake.guild_id}> ",
        "and the asker. Done.",
    ]
    fake_llm.script(Reply(chunks=chunks, delay_first=1.0, delay_between=0.6))
    async with running(tmp_path, fake, fake_llm) as proc:
        question = await fake.user_message(fake.channel_id, "ping everyone", mention_bot=True)
        await proc.wait_until(
            lambda: fake.answer_text(question) == "".join(chunks).strip(),
            what="the final answer",
        )
    message = fake.answer_parts(question)[0]
    writes = [c for c in fake.writes() if c.status == 200]
    assert len(message.history) >= 2, "expected a post and at least one edit"
    assert [c.method for c in writes].count("PATCH") >= 1
    assert all(c.json["allowed_mentions"] == NO_MENTIONS for c in writes)
    assert message.allowed_mentions == [NO_MENTIONS] * len(message.history)
    assert fake.pings == []
    # while the model had not answered yet, the channel showed the bot typing
    typing = fake.calls_to("POST", "/channels/{channel_id}/typing")
    assert typing and typing[0].at < writes[0].at


async def test_llm_failure_leaves_partial_text_and_a_note(
    tmp_path: Path, fake_discord: FakeDiscord, fake_llm: FakeOpenAI
) -> None:
    fake = fake_discord
    fake_llm.script(
        Fault.drop_mid_stream(after_chunks=3, reply=Reply(text="alpha beta gamma delta epsilon"))
    )
    async with running(tmp_path, fake, fake_llm) as proc:
        question = await fake.user_message(fake.channel_id, "fail please", mention_bot=True)
        await proc.wait_until(
            lambda: "stopped early" in fake.answer_text(question), what="the failure note"
        )
        text = fake.answer_text(question)
        assert text.startswith("alpha beta")
        assert "epsilon" not in text
        after = await fake.user_message(fake.channel_id, "still there?", mention_bot=True)
        await proc.wait_until(
            lambda: fake.answer_text(after) == "echo: still there?", what="the next answer"
        )


async def test_an_answer_interrupted_by_shutdown_is_closed_with_a_note(
    tmp_path: Path, fake_discord: FakeDiscord, fake_llm: FakeOpenAI
) -> None:
    fake = fake_discord
    words = " ".join(f"word{i}" for i in range(60))
    fake_llm.script(Reply(text=words, delay_between=0.2))
    async with running(tmp_path, fake, fake_llm) as proc:
        question = await fake.user_message(fake.channel_id, "long one", mention_bot=True)
        await proc.wait_until(
            lambda: "word3" in fake.answer_text(question), what="the answer to start showing"
        )
        assert await proc.stop() == 0
    text = fake.answer_text(question)
    assert text.startswith("word0 word1 word2 word3") and "word59" not in text
    assert text.endswith("⚠️ _The answer stopped early: the assistant was restarted._")


async def test_missing_permission_and_deleted_message_end_quietly(
    tmp_path: Path, fake_discord: FakeDiscord, fake_llm: FakeOpenAI
) -> None:
    fake = fake_discord
    words = " ".join(f"word{i}" for i in range(30))
    fake_llm.script(Reply(), Reply(text=words, delay_between=0.1))
    async with running(tmp_path, fake, fake_llm) as proc:
        fake.set_forbidden(fake.channel_id)
        refused = await fake.user_message(fake.channel_id, "no rights here", mention_bot=True)
        await proc.wait_until(
            lambda: any(c.status == 403 for c in fake.writes()), what="the refused post"
        )
        await proc.wait_until(lambda: "Missing Permissions" in proc.output, what="the 403 log")
        fake.forbidden_channels.clear()

        doomed = await fake.user_message(fake.channel_id, "long one", mention_bot=True)
        await proc.wait_until(lambda: bool(fake.answer_parts(doomed)), what="the first post")
        fake.delete_message(fake.answer_parts(doomed)[0].id)
        await proc.wait_until(lambda: "Unknown Message" in proc.output, what="the 404 log")

        after = await fake.user_message(fake.channel_id, "are you alive", mention_bot=True)
        await proc.wait_until(
            lambda: fake.answer_text(after) == "echo: are you alive", what="the next answer"
        )
        assert proc.running
    assert fake.answer_parts(refused) == []
    assert "Traceback" not in proc.output
    failed = [c for c in fake.writes() if c.status in (403, 404)]
    assert failed and all(c.status in (403, 404) for c in failed)
    # after the 404 the stream stopped: no more edits to the deleted message
    deleted_id = fake.answer_parts(doomed)[0].id
    edits = [c for c in fake.writes() if c.method == "PATCH" and c.path.endswith(deleted_id)]
    assert [c.status for c in edits].count(404) == 1


async def test_429s_from_a_stricter_discord_are_honoured_and_final_texts_arrive(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    # This Discord allows 2 creates and 2 edits per 5 s per channel, below the adapter's pacing,
    # and hides the remaining-count headers, so 429s happen; each must hold that bucket until
    # its reset, and every answer completes.
    async with FakeDiscord(message_limit=2, limit_headers=False) as fake:
        fake_llm.script(*[Reply(delay_between=0.1) for _ in range(3)])
        async with running(tmp_path, fake, fake_llm) as proc:
            questions = {
                await fake.user_message(
                    fake.channel_id, f"strict {i} one two three four five six", mention_bot=True
                ): f"echo: strict {i} one two three four five six"
                for i in range(3)
            }
            await proc.wait_until(
                lambda: all(fake.answer_text(m) == t for m, t in questions.items()),
                within=60,
                what="every answer despite 429s",
            )
    limited = [c for c in fake.calls if c.status == 429]
    assert limited, "the stricter limit should have produced a 429"
    assert fake.rate_limited == len(limited)
    creates = fake.calls_to("POST", "/channels/{channel_id}/messages")
    # after a 429 the bucket waited: never two 429s in a row for the same bucket
    statuses = [c.status for c in creates]
    assert all(not (a == 429 and b == 429) for a, b in itertools.pairwise(statuses))
