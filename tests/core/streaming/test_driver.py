"""Stream driver on virtual time against a budgeted fake platform."""

from __future__ import annotations

import asyncio
import itertools
import random
import re

import pytest

from core.errors import SinkGone, SinkRateLimited, SinkRejected
from core.streaming import (
    Pacer,
    PaceScope,
    ReplyStream,
    SinkLimits,
    StreamDriver,
    StreamPolicy,
    WriteKind,
    count_chars,
    count_utf16,
    finish_text,
    markup,
    split_final,
)
from core.streaming.markup import ResumePoint
from tests.fakes.budget_sink import Budget, BudgetSink, Platform
from tests.fakes.random_markdown import random_markdown
from tests.fakes.virtual_clock import VirtualClock

EDIT_SCOPE = PaceScope("T1:chat.update", rate=40 / 60, burst=5.0)
SLACK_BUDGETS = {"T1:chat.update": Budget(50, 60.0)}


def slack_limits(channel: str = "C1", **overrides: object) -> SinkLimits:
    settings: dict[str, object] = {
        "max_length": 4000,
        "post_scopes": (PaceScope(f"T1:{channel}:post", rate=1.0, burst=1.0),),
        "edit_scopes": (EDIT_SCOPE,),
        "min_edit_interval": 1.0,
    }
    settings.update(overrides)
    return SinkLimits(**settings)  # type: ignore[arg-type]


def slack_platform(clock: VirtualClock, **options: object) -> Platform:
    budgets = dict(SLACK_BUDGETS)
    budgets.update({f"T1:C{i}:post": Budget(1, 1.0) for i in range(60)})
    return Platform(clock, budgets, **options)  # type: ignore[arg-type]


def make_driver(clock: VirtualClock, **policy: object) -> StreamDriver:
    settings: dict[str, object] = {"pause_jitter": 0.1}
    settings.update(policy)
    pacer = Pacer(clock, StreamPolicy(**settings), rng=random.Random(3))  # type: ignore[arg-type]
    return StreamDriver(pacer)


def answer_text(rng: random.Random, paragraphs: int) -> str:
    words = ["stream", "token", "budget", "answer", "slack", "pace", "edit", "final", "message"]
    return "\n\n".join(
        " ".join(rng.choice(words) for _ in range(rng.randint(10, 40))) + "."
        for _ in range(paragraphs)
    )


async def produce(
    stream: ReplyStream, clock: VirtualClock, text: str, chunk: int = 4, every: float = 0.05
) -> None:
    """Feed `text` like a model would: the whole text so far, `chunk` characters at a time."""
    for end in range(chunk, len(text) + chunk, chunk):
        stream.update(text[:end])
        await clock.sleep(every)


def squeeze(text: str) -> str:
    """Text without whitespace and fence markup, to compare what was shown with the answer."""
    return re.sub(r"```\w*|\s+", "", text)


async def test_latest_wins_many_updates_become_few_writes(clock: VirtualClock) -> None:
    platform = slack_platform(clock, latency=0.05)
    sink = platform.sink(slack_limits())
    stream = make_driver(clock).open(sink)
    await stream.start()
    text = answer_text(random.Random(1), 6)
    await produce(stream, clock, text)  # ~250 updates over ~12 s
    result = await stream.finish(text)
    assert result.delivered and result.error is None
    assert sink.texts() == [text]
    updates = len(range(4, len(text) + 4, 4))
    assert updates > 200
    assert result.writes <= 20  # one post, about one edit per second, one final
    kinds = [r.kind for r in sink.records() if r.kind is not WriteKind.TYPING]
    assert kinds[:2] == [WriteKind.POST, WriteKind.EDIT] and kinds[-1] is WriteKind.FINAL
    assert platform.rate_limited == 0


async def test_at_most_one_write_in_flight(clock: VirtualClock) -> None:
    platform = slack_platform(clock, latency=0.7)
    sink = platform.sink(slack_limits(min_edit_interval=0.0))
    stream = make_driver(clock).open(sink)
    text = answer_text(random.Random(2), 3)
    await produce(stream, clock, text, chunk=2, every=0.01)
    result = await stream.finish(text)
    assert result.delivered
    assert sink.max_in_flight == 1
    records = [r for r in sink.records() if r.outcome == "ok"]
    for before, after in itertools.pairwise(records):
        assert after.received_at >= before.done_at


async def test_first_text_is_posted_promptly(clock: VirtualClock) -> None:
    platform = slack_platform(clock, latency=0.05)
    sink = platform.sink(slack_limits())
    stream = make_driver(clock).open(sink)
    await stream.start()
    await clock.sleep(2.0)
    stream.update("Hi")
    await clock.sleep(0.5)
    assert sink.texts() == ["Hi"]
    result = await stream.finish("Hi there")
    assert result.first_visible_at == pytest.approx(2.05)
    assert result.final_visible_at == pytest.approx(2.55)  # finals skip the edit interval


async def test_unchanged_text_is_not_written_again(clock: VirtualClock) -> None:
    platform = slack_platform(clock, not_modified="reject")
    sink = platform.sink(slack_limits(min_edit_interval=0.0))
    stream = make_driver(clock).open(sink)
    for _ in range(30):
        stream.update("Same text")
        await clock.sleep(0.2)
        stream.update("Same text  \n")  # renders the same
        await clock.sleep(0.2)
    result = await stream.finish("Same text")
    assert result.delivered
    assert [r.kind for r in sink.records()] == [WriteKind.POST, WriteKind.FINAL]
    assert platform.not_modified_errors == 0


async def test_dangling_markup_is_hidden_while_streaming(clock: VirtualClock) -> None:
    platform = slack_platform(clock)
    sink = platform.sink(slack_limits(min_edit_interval=0.0))
    stream = make_driver(clock).open(sink)
    text = "Intro **bold words** then code:\n\n```python\nprint('hi')\nprint('there')\n```\n\nEnd."
    await produce(stream, clock, text, chunk=1, every=0.3)
    await stream.finish(text)
    for record in sink.records():
        assert record.text.count("```") % 2 == 0, record.text
        assert record.text.count("**") % 2 == 0, record.text
    assert sink.texts() == [text]


async def test_each_write_scans_only_the_new_text(
    clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sink without an edit interval gets a write per update; none rescans the whole text."""
    scanned: list[int] = []
    real = markup._scan_from

    def spy(
        found: markup.Markup, start: ResumePoint, *, final: bool, probe: bool = False
    ) -> ResumePoint | None:
        scanned.append(len(found.text) - start.pos)
        return real(found, start, final=final, probe=probe)

    monkeypatch.setattr(markup, "_scan_from", spy)
    platform = Platform(clock)
    sink = platform.sink(SinkLimits(max_length=100_000, measure=count_utf16))
    stream = make_driver(clock).open(sink)
    rng = random.Random(8)
    text = "\n\n".join(random_markdown(rng) for _ in range(6))
    assert len(text) > 3000
    await produce(stream, clock, text, chunk=3, every=0.05)
    streamed = scanned[:]
    result = await stream.finish(text)
    assert result.delivered and sink.all_final()
    assert result.writes >= len(text) // 3 * 0.9  # about one edit per update
    assert max(streamed) <= 200  # bounded by the new text, not by the message


async def test_long_answer_rolls_over_into_several_messages(clock: VirtualClock) -> None:
    platform = slack_platform(clock, latency=0.05)
    sink = platform.sink(slack_limits(max_length=300, min_edit_interval=0.5))
    stream = make_driver(clock).open(sink)
    code = "\n".join(f"    total += values[{i}] * weight  # step {i}" for i in range(40))
    text = answer_text(random.Random(4), 3) + "\n\n```python\n" + code + "\n```\n\nThat is all."
    await produce(stream, clock, text, chunk=8, every=0.05)
    result = await stream.finish(text)
    assert result.delivered and result.error is None
    texts = sink.texts()
    assert len(texts) >= 6 and result.message_ids == sink.message_ids
    assert sink.all_final() and not platform.protocol_errors
    for shown in texts:
        assert len(shown) <= 300
        assert shown.count("```") % 2 == 0
    assert any(shown.startswith("```python\n") for shown in texts[1:])
    assert squeeze("".join(texts)) == squeeze(text)


async def test_utf16_limits_with_emoji(clock: VirtualClock) -> None:
    platform = Platform(clock)
    limits = SinkLimits(max_length=60, measure=count_utf16, min_edit_interval=0.0)
    sink = platform.sink(limits)
    stream = make_driver(clock).open(sink)
    text = " ".join(["emoji \U0001f600\U0001f44d\U0001f3fd and \U0001f1eb\U0001f1f7 flags"] * 12)
    await produce(stream, clock, text, chunk=3, every=0.1)
    result = await stream.finish(text)
    assert result.delivered, result.error
    assert all(count_utf16(shown) <= 60 for shown in sink.texts())
    assert squeeze("".join(sink.texts())) == squeeze(text)


async def test_final_text_is_complete_after_rate_limits(clock: VirtualClock) -> None:
    platform = slack_platform(clock)
    sink = platform.sink(slack_limits())
    driver = make_driver(clock)
    stream = driver.open(sink)
    sink.fail_next(WriteKind.FINAL, SinkRateLimited(3.0), times=2)
    stream.update("partial answer")
    await clock.sleep(1.0)
    result = await stream.finish("partial answer, now complete")
    assert result.delivered and result.error is None
    assert sink.texts() == ["partial answer, now complete"] and sink.all_final()
    assert result.rate_limited == 2
    assert result.final_visible_at is not None and result.final_visible_at >= 1.0 + 6.0
    assert driver.pacer.stats()["T1:chat.update"].pauses == 2


async def test_retry_after_pauses_the_scope_for_every_stream(clock: VirtualClock) -> None:
    platform = slack_platform(clock)
    driver = make_driver(clock)
    sinks = [platform.sink(slack_limits(channel=f"C{i}", min_edit_interval=0.5)) for i in range(3)]
    sinks[0].fail_next(WriteKind.EDIT, SinkRateLimited(10.0))
    streams = [driver.open(sink) for sink in sinks]
    text = answer_text(random.Random(5), 4)
    await asyncio.gather(*(produce(stream, clock, text, every=0.04) for stream in streams))
    results = await asyncio.gather(*(stream.finish(text) for stream in streams))
    assert all(result.delivered for result in results)
    assert all(sink.texts() == [text] for sink in sinks)
    limited = next(r for r in platform.records if r.outcome == "injected")
    during = [
        r
        for r in platform.records
        if r.kind in (WriteKind.EDIT, WriteKind.FINAL)
        and r.outcome == "ok"
        and limited.received_at < r.received_at < limited.received_at + 10.0
    ]
    assert during == []
    assert platform.rate_limited == 0


async def test_gone_target_ends_the_answer_quietly(clock: VirtualClock) -> None:
    platform = slack_platform(clock)
    sink = platform.sink(slack_limits())
    stream = make_driver(clock).open(sink)
    sink.fail_next(WriteKind.EDIT, SinkGone("message deleted"))
    text = answer_text(random.Random(6), 2)
    await produce(stream, clock, text)
    result = await stream.finish(text)
    assert not result.delivered
    assert isinstance(result.error, SinkGone)
    gone_at = next(r.received_at for r in sink.records() if r.outcome == "injected")
    assert all(r.received_at <= gone_at for r in sink.records())


async def test_rejected_write_stops_the_answer(clock: VirtualClock) -> None:
    platform = slack_platform(clock)
    sink = platform.sink(slack_limits())
    sink.fail_next(WriteKind.POST, SinkRejected("not_in_channel"))
    stream = make_driver(clock).open(sink)
    result = await stream.finish("hello")
    assert not result.delivered and isinstance(result.error, SinkRejected)
    assert result.message_ids == [] and result.writes == 0


class ExplodingSink(BudgetSink):
    async def edit(self, message_id: str, text: str) -> None:
        raise RuntimeError("adapter bug")


async def test_unexpected_sink_exception_is_treated_as_rejected(
    clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    platform = slack_platform(clock)
    sink = ExplodingSink(platform, slack_limits(min_edit_interval=0.0), "boom")
    stream = make_driver(clock).open(sink)
    stream.update("one")
    await clock.sleep(1.0)
    stream.update("one two")
    await clock.sleep(1.0)
    result = await stream.finish("one two three")
    assert not result.delivered and isinstance(result.error, SinkRejected)
    assert "adapter bug" in str(result.error)
    assert "unexpected error" in caplog.text


async def test_platform_without_edits_gets_whole_parts_only(clock: VirtualClock) -> None:
    platform = Platform(clock)
    limits = SinkLimits(
        max_length=120,
        supports_edit=False,
        typing_scopes=(PaceScope("typing", rate=1.0),),
    )
    sink = platform.sink(limits)
    stream = make_driver(clock).open(sink)
    await stream.start()
    text = answer_text(random.Random(7), 4)
    await produce(stream, clock, text)
    result = await stream.finish(text)
    assert result.delivered
    assert {r.kind for r in sink.records()} == {WriteKind.POST, WriteKind.TYPING}
    assert len(sink.texts()) >= 3 and all(len(t) <= 120 for t in sink.texts())
    assert squeeze("".join(sink.texts())) == squeeze(text)
    first_post = next(r.received_at for r in sink.records() if r.kind is WriteKind.POST)
    assert first_post < clock.now() - 1.0  # full parts were posted while the answer grew


async def test_typing_repeats_until_the_first_text(clock: VirtualClock) -> None:
    platform = Platform(clock)
    sink = platform.sink(slack_limits(typing_scopes=(PaceScope("typing", rate=1.0),)))
    stream = make_driver(clock).open(sink)
    await stream.start()
    await clock.sleep(9.0)
    stream.update("Now")
    await clock.sleep(20.0)
    result = await stream.finish("Now done")
    assert result.delivered
    typing_times = [r.received_at for r in sink.records() if r.kind is WriteKind.TYPING]
    assert typing_times == pytest.approx([0.0, 4.0, 8.0])


async def test_typing_failure_is_ignored(clock: VirtualClock) -> None:
    platform = Platform(clock)
    sink = platform.sink(slack_limits())
    sink.fail_next(WriteKind.TYPING, SinkRejected("no typing here"))
    stream = make_driver(clock).open(sink)
    await stream.start()
    await clock.sleep(5.0)
    result = await stream.finish("fine")
    assert result.delivered and result.error is None
    assert sink.texts() == ["fine"]


async def test_finish_does_not_wait_for_the_edit_interval(clock: VirtualClock) -> None:
    platform = slack_platform(clock)
    sink = platform.sink(slack_limits(min_edit_interval=30.0))
    stream = make_driver(clock).open(sink)
    stream.update("first words")
    await clock.sleep(1.0)
    stream.update("first words and more")  # the edit must wait 30 s
    await clock.sleep(4.0)
    result = await stream.finish("first words and more, all of it")
    assert result.delivered
    assert result.final_visible_at == pytest.approx(5.0)
    assert sink.texts() == ["first words and more, all of it"]


async def test_final_write_gives_up_after_the_deadline(clock: VirtualClock) -> None:
    platform = slack_platform(clock)
    sink = platform.sink(slack_limits())
    sink.fail_next(WriteKind.FINAL, SinkRateLimited(10.0), times=1000)
    stream = make_driver(clock, final_deadline=60.0).open(sink)
    stream.update("text")
    await clock.sleep(1.0)
    result = await stream.finish("text, final")
    assert not result.delivered
    assert isinstance(result.error, SinkRateLimited)
    assert 60.0 <= clock.now() <= 75.0


async def test_abort_stops_every_write(clock: VirtualClock) -> None:
    platform = slack_platform(clock, latency=0.2)
    sink = platform.sink(slack_limits(min_edit_interval=0.0))
    stream = make_driver(clock).open(sink)
    text = answer_text(random.Random(8), 3)
    producer = asyncio.ensure_future(produce(stream, clock, text))
    await clock.sleep(2.0)
    await stream.abort()
    aborted_at = clock.now()
    await producer
    result = await stream.finish(text)
    assert not result.delivered
    assert len(sink.records()) >= 2  # it was writing before the abort
    assert all(r.received_at <= aborted_at for r in sink.records())


async def test_finish_alone_posts_and_finalizes(clock: VirtualClock) -> None:
    platform = slack_platform(clock)
    sink = platform.sink(slack_limits())
    result = await make_driver(clock).open(sink).finish("\u26a0\ufe0f Sorry, try again.")
    assert result.delivered and result.writes == 2
    assert sink.texts() == ["\u26a0\ufe0f Sorry, try again."] and sink.all_final()


async def test_empty_answer_writes_nothing(clock: VirtualClock) -> None:
    platform = slack_platform(clock)
    sink = platform.sink(slack_limits())
    stream = make_driver(clock).open(sink)
    await stream.start()
    result = await stream.finish("")
    assert result.delivered and result.message_ids == [] and result.writes == 0


async def test_fifty_streams_share_one_workspace_budget(clock: VirtualClock) -> None:
    """50 answers at once in one Slack workspace (chat.update 50/min): no 429, nothing lost."""
    platform = slack_platform(clock, latency=0.1)
    driver = make_driver(clock)
    rng = random.Random(9)
    texts = [answer_text(rng, rng.randint(1, 4)) for _ in range(50)]
    sinks = [platform.sink(slack_limits(channel=f"C{i}")) for i in range(50)]

    async def answer(index: int) -> None:
        await clock.sleep(rng.uniform(0, 10))
        stream = driver.open(sinks[index])
        await stream.start()
        await produce(stream, clock, texts[index], chunk=5, every=0.05)
        result = await stream.finish(texts[index])
        assert result.delivered, result.error

    async with asyncio.TaskGroup() as group:
        for index in range(50):
            group.create_task(answer(index))
    assert platform.rate_limited == 0
    for sink, text in zip(sinks, texts, strict=True):
        assert sink.texts() == [text]
        assert sink.all_final()
    stats = driver.pacer.stats()["T1:chat.update"]
    assert stats.grants <= 5 + clock.now() * 40 / 60 + 1


async def test_telegram_group_streams_share_group_and_bot_limits(clock: VirtualClock) -> None:
    """Six answers in one group (20/min) plus a bot-wide 30/s scope: no 429, all complete."""
    group = PaceScope("tg:group:-100", rate=18 / 60, burst=3.0)
    bot = PaceScope("tg:bot", rate=25.0, burst=25.0)
    platform = Platform(
        clock,
        {"tg:group:-100": Budget(20, 60.0), "tg:bot": Budget(30, 1.0)},
        latency=0.08,
    )
    limits = SinkLimits(
        max_length=4096,
        measure=count_utf16,
        post_scopes=(group, bot),
        edit_scopes=(group, bot),
        typing_scopes=(group, bot),
        min_edit_interval=3.0,
    )
    driver = make_driver(clock)
    rng = random.Random(11)
    texts = [answer_text(rng, 3) for _ in range(6)]
    sinks = [platform.sink(limits) for _ in texts]

    async def answer(index: int) -> None:
        await clock.sleep(index * 2.0)
        stream = driver.open(sinks[index])
        await stream.start()
        await produce(stream, clock, texts[index], chunk=6, every=0.05)
        result = await stream.finish(texts[index])
        assert result.delivered, result.error

    async with asyncio.TaskGroup() as tasks:
        for index in range(len(texts)):
            tasks.create_task(answer(index))
    assert platform.rate_limited == 0
    assert [sink.texts() for sink in sinks] == [[text] for text in texts]


def plain(text: str) -> str:
    """Text without fence lines, inline markup characters and whitespace."""
    without_fences = re.sub(r"(?m)^ {0,3}```.*$", "", text)
    return re.sub(r"[\s*_~`]+", "", without_fences)


@pytest.mark.parametrize("seed", range(12))
async def test_random_answers_roll_over_cleanly(clock: VirtualClock, seed: int) -> None:
    rng = random.Random(seed)
    text = "\n\n".join(random_markdown(rng) for _ in range(3))
    platform = Platform(clock, latency=0.03)
    limits = SinkLimits(max_length=rng.choice([90, 150, 400]), measure=count_utf16)
    sink = platform.sink(limits)
    stream = make_driver(clock).open(sink)
    await produce(stream, clock, text, chunk=rng.randint(1, 12), every=0.05)
    result = await stream.finish(text)
    assert result.delivered, result.error  # the sink refuses anything over max_length
    for record in sink.records():
        assert len(re.findall(r"(?m)^ {0,3}```", record.text)) % 2 == 0, record.text
    assert sink.all_final() and not platform.protocol_errors
    assert plain("\n".join(sink.texts())) == plain(text)


class DraftSink:
    """A sink whose finalize replaces the draft with a real message (like Telegram drafts)."""

    def __init__(self) -> None:
        self.limits = SinkLimits(max_length=50)
        self.finals: list[tuple[str, str]] = []

    async def show_typing(self) -> None:
        return None

    async def post(self, text: str) -> str:
        return f"draft{len(self.finals)}"

    async def edit(self, message_id: str, text: str) -> None:
        return None

    async def finalize(self, message_id: str, text: str) -> str | None:
        self.finals.append((message_id, text))
        return f"real{len(self.finals)}"


async def test_finalize_can_replace_the_message_id(clock: VirtualClock) -> None:
    sink = DraftSink()
    stream = make_driver(clock).open(sink)
    await stream.start()
    text = "first paragraph here.\n\nsecond paragraph that rolls over the limit."
    result = await stream.finish(text)
    assert [message_id for message_id, _ in sink.finals] == ["draft0", "draft1"]
    assert result.message_ids == ["real1", "real2"]


# -- the last part counts the fence it is closed with ----------------------------------------


async def test_last_part_that_fits_only_without_its_closing_fence_is_cut(
    clock: VirtualClock,
) -> None:
    platform = Platform(clock)  # refuses a text over max_length: the answer would be lost
    sink = platform.sink(SinkLimits(max_length=2000))
    stream = make_driver(clock).open(sink)
    code = "\n".join(f"x{i} = {i}  # step" for i in range(200))
    text = ("Here is the code:\n\n```python\n" + code)[:1998]  # "\n```" would make it 2002
    await stream.start()
    stream.update(text[:1000])
    await clock.sleep(0.5)
    stream.update(text)
    result = await stream.finish(text)
    assert result.delivered and result.error is None
    assert all(len(record.text) <= 2000 for record in sink.records())
    texts = sink.texts()
    assert len(texts) == 2 and sink.all_final()
    assert texts[0].endswith("\n```") and texts[1].startswith("```python\n")
    assert texts[1].endswith("\n```")
    assert squeeze("".join(texts)) == squeeze(text + "```")


def unfinished_markdown(rng: random.Random) -> str:
    """A random answer that may end inside a fence or an emphasis run."""
    text = "\n\n".join(random_markdown(rng) for _ in range(2))
    roll = rng.random()
    if roll < 0.5:
        code = "\n".join("    code = line" for _ in range(rng.randint(1, 8)))
        opener = "\n\n```" + rng.choice(["", "python", "text title=x"]) + "\n"
        return text + opener + code[: rng.randint(0, len(code))]
    if roll < 0.7:
        return text + " **open bold words"
    if roll < 0.8:
        return text + " _open italic"
    return text[: rng.randint(len(text) * 2 // 3, len(text))]


@pytest.mark.parametrize("seed", range(24))
async def test_every_final_write_fits_even_when_the_text_ends_inside_markup(
    clock: VirtualClock, seed: int
) -> None:
    rng = random.Random(7000 + seed)
    text = unfinished_markdown(rng)
    measure = rng.choice([count_chars, count_utf16])
    size, closed = measure(text), measure(finish_text(text))
    if seed % 3 == 0:  # several parts
        max_length = rng.randint(60, 400)
    elif closed > size:  # the whole text fits only until its closing fence is added
        max_length = rng.randint(size, closed - 1)
    else:
        max_length = max(40, size + rng.randint(-5, 2))
    platform = Platform(clock, latency=0.02)
    sink = platform.sink(SinkLimits(max_length=max_length, measure=measure))
    stream = make_driver(clock).open(sink)
    await produce(stream, clock, text, chunk=rng.randint(1, 40), every=0.05)
    result = await stream.finish(text)
    assert result.delivered, (max_length, result.error)
    finals = [r for r in sink.records() if r.kind is WriteKind.FINAL]
    assert finals and all(measure(r.text) <= max_length for r in sink.records())
    assert sink.all_final() and not platform.protocol_errors
    assert plain("\n".join(sink.texts())) == plain(text)


# -- openers still waiting for their closer ---------------------------------------------------


async def stream_words(stream: ReplyStream, clock: VirtualClock, text: str) -> str:
    """Feed `text` a word at a time; returns the whole text."""
    shown = ""
    for word in text.split(" "):
        shown = f"{shown} {word}" if shown else word
        stream.update(shown)
        await clock.sleep(0.05)
    return shown


@pytest.mark.parametrize("opening", ["In Python 2**10 is 1024.", "Delete all *.py files first."])
async def test_streaming_cut_invents_no_emphasis(clock: VirtualClock, opening: str) -> None:
    platform = Platform(clock)
    sink = platform.sink(SinkLimits(max_length=200))
    stream = make_driver(clock).open(sink)
    text = opening + " " + " ".join(["word"] * 60) + " and then more text follows here."
    await stream.start()
    result = await stream.finish(await stream_words(stream, clock, text))
    assert result.delivered
    texts = sink.texts()
    assert len(texts) == 2
    assert not texts[0].endswith("*") and not texts[1].startswith("*"), texts
    assert texts == split_final(text, 200)  # the parts frozen while streaming, as if finished
    assert all(not r.text.rstrip().endswith("*") for r in sink.records())


async def test_streaming_cut_inside_real_bold_closes_and_reopens_it(clock: VirtualClock) -> None:
    platform = Platform(clock)
    sink = platform.sink(SinkLimits(max_length=120))
    stream = make_driver(clock).open(sink)
    text = "Intro words here. **" + " ".join(["bold"] * 50) + " end** and after."
    result = await stream.finish(await stream_words(stream, clock, text))
    assert result.delivered
    texts = sink.texts()
    assert len(texts) >= 3
    for shown in texts:
        assert shown.count("**") == 2, texts
    assert all(shown.startswith("**bold") for shown in texts[1:])
    assert all(record.text.count("**") % 2 == 0 for record in sink.records())


# -- finalize with unchanged text ---------------------------------------------------------------


@pytest.mark.parametrize("finalize_unchanged", [True, False])
async def test_short_answer_finalize_with_unchanged_text(
    clock: VirtualClock, finalize_unchanged: bool
) -> None:
    platform = slack_platform(clock)
    sink = platform.sink(slack_limits(finalize_unchanged=finalize_unchanged))
    result = await make_driver(clock).open(sink).finish("Done: 3 files renamed.")
    assert result.delivered and result.error is None
    assert sink.texts() == ["Done: 3 files renamed."] and result.message_ids == sink.message_ids
    kinds = [record.kind for record in sink.records()]
    if finalize_unchanged:  # a draft or native stream must be committed
        assert kinds == [WriteKind.POST, WriteKind.FINAL] and result.writes == 2
        assert platform.unchanged_finals == 1 and sink.all_final()
    else:  # a plain edit platform: the post already shows the final text
        assert kinds == [WriteKind.POST] and result.writes == 1
        assert platform.unchanged_finals == 0
    assert result.final_visible_at is not None


@pytest.mark.parametrize("finalize_unchanged", [True, False])
async def test_streamed_answer_finalize_with_unchanged_text(
    clock: VirtualClock, finalize_unchanged: bool
) -> None:
    platform = slack_platform(clock, not_modified="reject")
    limits = slack_limits(
        max_length=150, min_edit_interval=0.0, finalize_unchanged=finalize_unchanged
    )
    sink = platform.sink(limits)
    stream = make_driver(clock).open(sink)
    text = answer_text(random.Random(12), 3)
    await produce(stream, clock, text, chunk=3, every=0.3)  # every preview gets written
    await clock.sleep(5.0)
    result = await stream.finish(text)  # the open message already shows the last part
    assert result.delivered and result.error is None
    texts = sink.texts()
    assert len(texts) >= 3 and squeeze("".join(texts)) == squeeze(text)
    finals = [r for r in sink.records() if r.kind is WriteKind.FINAL]
    assert not platform.protocol_errors and platform.not_modified_errors == 0
    if finalize_unchanged:
        assert len(finals) == len(texts) and sink.all_final()
    else:
        # a frozen part shorter than its last preview is still written; the last message,
        # whose preview already shows all of it, is not written again
        assert platform.unchanged_finals == 0
        assert 1 <= len(finals) < len(texts)
        assert sink.message_ids[-1] not in {r.message_id for r in finals}
        assert result.message_ids == sink.message_ids


async def test_final_text_that_differs_is_still_finalized(clock: VirtualClock) -> None:
    platform = slack_platform(clock)
    sink = platform.sink(slack_limits(finalize_unchanged=False))
    stream = make_driver(clock).open(sink)
    stream.update("partial answer")
    await clock.sleep(1.0)
    result = await stream.finish("partial answer, now complete")
    assert result.delivered
    assert [r.kind for r in sink.records()] == [WriteKind.POST, WriteKind.FINAL]
    assert sink.texts() == ["partial answer, now complete"] and sink.all_final()


async def test_a_rate_limit_naming_its_scope_pauses_only_that_scope(clock: VirtualClock) -> None:
    bot_wide = PaceScope("bot:global", rate=40.0, burst=8.0)
    platform = Platform(clock, {})
    driver = make_driver(clock)
    sinks = [
        platform.sink(
            SinkLimits(
                max_length=2000,
                post_scopes=(PaceScope(f"C{i}:post", rate=1.0), bot_wide),
                edit_scopes=(PaceScope(f"C{i}:edit", rate=1.0), bot_wide),
                min_edit_interval=0.5,
            )
        )
        for i in range(2)
    ]
    sinks[0].fail_next(WriteKind.EDIT, SinkRateLimited(10.0, scopes=("C0:edit",)))
    streams = [driver.open(sink) for sink in sinks]
    text = answer_text(random.Random(7), 3)
    await asyncio.gather(*(produce(stream, clock, text, every=0.04) for stream in streams))
    results = await asyncio.gather(*(stream.finish(text) for stream in streams))
    assert all(result.delivered for result in results)
    limited = next(r for r in platform.records if r.outcome == "injected")
    window = (limited.received_at, limited.received_at + 10.0)

    def writes_during(sink: BudgetSink) -> int:
        return sum(
            1
            for r in sink.records()
            if r.kind in (WriteKind.EDIT, WriteKind.FINAL)
            and r.outcome == "ok"
            and window[0] < r.received_at < window[1]
        )

    assert writes_during(sinks[0]) == 0  # its own channel waits out the limit
    assert writes_during(sinks[1]) > 0  # the other channel, sharing the bot-wide scope, goes on
    stats = driver.pacer.stats()
    assert stats["C0:edit"].pauses == 1 and stats["bot:global"].pauses == 0
