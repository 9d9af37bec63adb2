"""ChatService end to end: real store, real LLM client against the fake SSE server, real driver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest

from core.caps import ParamCaps
from core.clock import SystemClock
from core.context import TokenCounter
from core.conversation import ConversationKey, Inbound, Role, TurnStatus
from core.errors import SinkGone
from core.llm import ChatCompletionsClient, ChatParams, LLMEndpoint
from core.routing import Routed
from core.service import ChatService, Prepare, Prepared, ServiceConfig
from core.store import HistoryStore
from core.streaming import Pacer, PaceScope, SinkLimits, StreamDriver, WriteKind
from tests.fakes.budget_sink import Budget, BudgetSink, Platform
from tests.fakes.openai_server import FakeOpenAI, Fault, Reply

SYSTEM = "You are a test assistant."
EDIT_SCOPE = PaceScope("test:edit", rate=50.0, burst=10)
POST_SCOPE = PaceScope("test:post", rate=50.0, burst=10)


@dataclass
class Rig:
    """Everything a service test needs."""

    service: ChatService
    store: HistoryStore
    llm: FakeOpenAI
    platform: Platform
    counter: int = 0

    def sink(self, max_length: int = 4000) -> BudgetSink:
        limits = SinkLimits(
            max_length=max_length, post_scopes=(POST_SCOPE,), edit_scopes=(EDIT_SCOPE,)
        )
        return self.platform.sink(limits)

    def inbound(
        self,
        text: str,
        *,
        thread: str = "t1",
        author: str = "U1",
        name: str = "Ada Lovelace",
        direct: bool = False,
        reply_to: str | None = None,
        event_id: str | None = None,
    ) -> Inbound:
        self.counter += 1
        return Inbound(
            key=ConversationKey("test", "space", "chan", thread),
            message_id=f"in{self.counter}",
            author_id=author,
            author_name=name,
            text=text,
            is_direct=direct,
            reply_to=reply_to,
            event_id=event_id,
        )

    def sent_messages(self, index: int = -1) -> list[tuple[str, str]]:
        body = self.llm.chat_requests[index].json
        return [(m["role"], m["content"]) for m in body["messages"]]


@asynccontextmanager
async def make_rig(tmp_path: Path, llm: FakeOpenAI, **config: object) -> AsyncIterator[Rig]:
    store = await HistoryStore.open(f"sqlite:///{tmp_path / 'service.db'}")
    http = httpx.AsyncClient()
    client = ChatCompletionsClient(
        http,
        LLMEndpoint(base_url=llm.base_url, max_retries=0, first_token_timeout=5, chunk_timeout=5),
    )
    clock = SystemClock()
    pacer = Pacer(clock)
    params = config.pop("params", ChatParams(model="fake-model"))
    assert isinstance(params, ChatParams)
    service_config = ServiceConfig(
        system_prompt=SYSTEM,
        params=params,
        context_window=int(config.pop("context_window", 100_000)),  # type: ignore[call-overload]
        reply_tokens=int(config.pop("reply_tokens", 1_000)),  # type: ignore[call-overload]
        shutdown_grace=float(config.pop("shutdown_grace", 3.0)),  # type: ignore[arg-type]
        user_hash_key=b"k" * 32,
        caps=config.pop("caps", ParamCaps()),  # type: ignore[arg-type]
        user_rate=int(config.pop("user_rate", 20)),  # type: ignore[call-overload]
        user_answers=int(config.pop("user_answers", 2)),  # type: ignore[call-overload]
        user_queue=int(config.pop("user_queue", 10)),  # type: ignore[call-overload]
    )
    service = ChatService(
        store=store,
        llm=client,
        driver=StreamDriver(pacer, clock),
        counter=TokenCounter(),
        config=service_config,
    )
    platform = Platform(clock, {"test:edit": Budget(60, 1.0)})
    try:
        yield Rig(service, store, llm, platform)
    finally:
        await http.aclose()
        await store.close()


@pytest.fixture
async def rig(tmp_path: Path, fake_llm: FakeOpenAI) -> AsyncIterator[Rig]:
    async with make_rig(tmp_path, fake_llm) as value:
        yield value


async def test_three_turns_carry_exactly_the_earlier_exchanges(rig: Rig) -> None:
    for text in ("first question", "second question", "third question"):
        sink = rig.sink()
        outcome = await rig.service.handle(rig.inbound(text), sink)
        assert outcome.status is TurnStatus.COMPLETE
        assert sink.texts() == [f"echo: {text}"] and sink.all_final()
    assert rig.sent_messages(2) == [
        ("system", SYSTEM),
        ("user", "first question"),
        ("assistant", "echo: first question"),
        ("user", "second question"),
        ("assistant", "echo: second question"),
        ("user", "third question"),
    ]


async def test_group_turns_carry_author_names_and_direct_ones_do_not(rig: Rig) -> None:
    await rig.service.handle(rig.inbound("hi", name="Zoë O'Neil"), rig.sink())
    group = rig.llm.chat_requests[0].json["messages"][-1]
    assert group["name"] == "Zoe_ONeil"
    await rig.service.handle(rig.inbound("hi", thread="dm", direct=True), rig.sink())
    assert "name" not in rig.llm.chat_requests[1].json["messages"][-1]


async def test_user_is_a_stable_pseudonym_never_the_raw_id(rig: Rig) -> None:
    await rig.service.handle(rig.inbound("a", author="U12345"), rig.sink())
    await rig.service.handle(rig.inbound("b", author="U12345", thread="t2"), rig.sink())
    users = [r.json["user"] for r in rig.llm.chat_requests]
    assert users[0] == users[1] and "U12345" not in users[0]


async def test_conversations_are_kept_apart(rig: Rig) -> None:
    await rig.service.handle(rig.inbound("in thread one", thread="one"), rig.sink())
    await rig.service.handle(rig.inbound("in thread two", thread="two"), rig.sink())
    assert rig.sent_messages(1) == [("system", SYSTEM), ("user", "in thread two")]


async def test_a_repeated_event_is_answered_once(rig: Rig) -> None:
    first = rig.inbound("once", event_id="Ev1")
    again = rig.inbound("once", event_id="Ev1")
    outcomes = await asyncio.gather(
        rig.service.handle(first, rig.sink()), rig.service.handle(again, rig.sink())
    )
    assert sorted(o.skipped or "answered" for o in outcomes) == ["answered", "duplicate"]
    assert len(rig.llm.chat_requests) == 1


async def test_messages_of_one_conversation_are_answered_in_order(rig: Rig) -> None:
    rig.llm.script(Reply(text="slow answer to the first", delay_between=0.05))
    first = asyncio.create_task(rig.service.handle(rig.inbound("first"), rig.sink()))
    await asyncio.sleep(0.05)
    second = await rig.service.handle(rig.inbound("second"), rig.sink())
    await first
    assert second.status is TurnStatus.COMPLETE
    assert rig.sent_messages(1)[-3:] == [
        ("user", "first"),
        ("assistant", "slow answer to the first"),
        ("user", "second"),
    ]


async def test_other_conversations_are_not_held_up(rig: Rig) -> None:
    rig.llm.script(Reply(text="a b c d e f g h", delay_between=0.2))
    slow = asyncio.create_task(rig.service.handle(rig.inbound("slow", thread="a"), rig.sink()))
    await asyncio.sleep(0.1)
    async with asyncio.timeout(1.0):
        fast = await rig.service.handle(rig.inbound("fast", thread="b"), rig.sink())
    assert fast.status is TurnStatus.COMPLETE and not slow.done()
    await slow


async def test_failure_before_any_text_leaves_a_note_and_stores_the_user_turn(rig: Rig) -> None:
    rig.llm.script(Fault.status(503))
    sink = rig.sink()
    outcome = await rig.service.handle(rig.inbound("will fail"), sink)
    assert outcome.status is TurnStatus.FAILED and outcome.error == "LLMUnavailable"
    assert sink.texts() == [
        "⚠️ Sorry, the language model is unavailable right now. Please try again in a moment."
    ]
    key = outcome.key
    assert key is not None
    turns = await rig.store.recent(key, limit=10)
    assert [(t.role, t.status) for t in turns] == [
        (Role.USER, TurnStatus.COMPLETE),
        (Role.ASSISTANT, TurnStatus.FAILED),
    ]
    # The service keeps going, and the failed answer is not sent back to the model.
    again = await rig.service.handle(rig.inbound("try again"), rig.sink())
    assert again.status is TurnStatus.COMPLETE
    assert rig.sent_messages()[1:] == [("user", "will fail"), ("user", "try again")]


async def test_break_mid_answer_keeps_partial_text_with_a_note(rig: Rig) -> None:
    rig.llm.script(
        Fault.drop_mid_stream(after_chunks=3, reply=Reply(text="one two three four five"))
    )
    sink = rig.sink()
    outcome = await rig.service.handle(rig.inbound("count"), sink)
    assert outcome.status is TurnStatus.PARTIAL
    (text,) = sink.texts()
    assert text.startswith("one two three")
    assert "stopped early" in text and sink.all_final()
    key = outcome.key
    assert key is not None
    stored = (await rig.store.recent(key, limit=1))[0]
    assert stored.status is TurnStatus.PARTIAL and stored.content == outcome.text
    assert "stopped early" not in stored.content


async def test_truncated_stream_and_length_limit_are_told(rig: Rig) -> None:
    rig.llm.script(Reply(text="cut here", finish_reason="length"))
    sink = rig.sink()
    outcome = await rig.service.handle(rig.inbound("long please"), sink)
    assert outcome.status is TurnStatus.COMPLETE and outcome.finish_reason == "length"
    assert "length limit" in sink.texts()[0]
    rig.llm.script(Fault.no_finish_reason(reply=Reply(text="no ending")))
    sink = rig.sink()
    outcome = await rig.service.handle(rig.inbound("again"), sink)
    assert outcome.status is TurnStatus.PARTIAL
    assert sink.texts()[0].startswith("no ending") and "cut off" in sink.texts()[0]


async def test_a_gone_sink_ends_the_answer_quietly_and_stores_it(rig: Rig) -> None:
    sink = rig.sink()
    sink.fail_next(WriteKind.POST, SinkGone("channel deleted"), times=5)
    outcome = await rig.service.handle(rig.inbound("anyone?"), sink)
    assert outcome.error is None and outcome.status is TurnStatus.COMPLETE
    assert outcome.results and not outcome.results[0].delivered
    follow_up = await rig.service.handle(rig.inbound("still there?"), rig.sink())
    assert follow_up.status is TurnStatus.COMPLETE


async def test_long_answer_is_split_and_a_reply_to_any_part_finds_the_conversation(
    rig: Rig,
) -> None:
    paragraph = " ".join(["word"] * 60)
    text = "\n\n".join(f"Part {i}: {paragraph}" for i in range(8))
    rig.llm.script(Reply(text=text))
    sink = rig.sink(max_length=800)
    outcome = await rig.service.handle(rig.inbound("long"), sink)
    parts = sink.texts()
    assert len(parts) > 2 and all(len(p) <= 800 for p in parts) and sink.all_final()
    assert " ".join(" ".join(parts).split()) == " ".join(text.split())
    middle = sink.message_ids[len(parts) // 2]
    found = await rig.store.find_turn("test", middle, space="space", channel="chan")
    assert found is not None and found[0] == outcome.key


async def test_reply_to_an_earlier_message_in_a_direct_chat_continues_from_there(
    rig: Rig,
) -> None:
    sinks = [rig.sink() for _ in range(3)]
    for text, sink in zip(("alpha", "beta", "gamma"), sinks, strict=True):
        await rig.service.handle(rig.inbound(text, thread="", direct=True), sink)
    first_answer = sinks[0].message_ids[0]
    await rig.service.handle(
        rig.inbound("back to alpha", thread="", direct=True, reply_to=first_answer), rig.sink()
    )
    assert rig.sent_messages()[1:] == [
        ("user", "alpha"),
        ("assistant", "echo: alpha"),
        ("user", "back to alpha"),
    ]
    # The branch is now the running conversation of the chat.
    await rig.service.handle(rig.inbound("and then", thread="", direct=True), rig.sink())
    assert rig.sent_messages()[-2:] == [("assistant", "echo: back to alpha"), ("user", "and then")]


async def test_reply_in_a_group_chain_continues_that_chain(rig: Rig) -> None:
    first = rig.sink()
    await rig.service.handle(rig.inbound("chain A starts", thread="rootA"), first)
    await rig.service.handle(rig.inbound("chain B starts", thread="rootB"), rig.sink())
    await rig.service.handle(
        rig.inbound("more A", thread="ignored", reply_to=first.message_ids[0]), rig.sink()
    )
    assert rig.sent_messages()[1:] == [
        ("user", "chain A starts"),
        ("assistant", "echo: chain A starts"),
        ("user", "more A"),
    ]


async def test_new_command_starts_over_and_set_changes_parameters(rig: Rig) -> None:
    await rig.service.handle(rig.inbound("remember this"), rig.sink())
    sink = rig.sink()
    await rig.service.handle(rig.inbound("/new"), sink)
    assert "new conversation" in sink.texts()[0]
    sink = rig.sink()
    await rig.service.handle(rig.inbound("/set temperature 0.25"), sink)
    assert "temperature set" in sink.texts()[0]
    sink = rig.sink()
    await rig.service.handle(rig.inbound("/set temperature 7"), sink)
    assert "between 0 and 2" in sink.texts()[0]
    await rig.service.handle(rig.inbound("fresh start"), rig.sink())
    body = rig.llm.chat_requests[-1].json
    assert body["temperature"] == 0.25
    assert [(m["role"], m["content"]) for m in body["messages"]] == [
        ("system", SYSTEM),
        ("user", "fresh start"),
    ]
    sink = rig.sink()
    await rig.service.handle(rig.inbound("/params"), sink)
    assert "temperature: 0.25 (set here)" in sink.texts()[0]
    assert len(rig.llm.chat_requests) == 2


async def test_every_parameter_reaches_the_server(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    params = ChatParams(
        model="fake-model",
        temperature=0.3,
        top_p=0.9,
        n=1,
        stop=("END",),
        max_tokens=300,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        logit_bias={"50256": -100},
        seed=7,
    )
    async with make_rig(tmp_path, fake_llm, params=params) as rig:
        await rig.service.handle(rig.inbound("params"), rig.sink())
        body = fake_llm.chat_requests[0].json
        assert body["stream"] is True
        for name, value in {
            "temperature": 0.3,
            "top_p": 0.9,
            "n": 1,
            "stop": ["END"],
            "max_tokens": 300,
            "presence_penalty": 0.5,
            "frequency_penalty": -0.5,
            "logit_bias": {"50256": -100},
            "seed": 7,
        }.items():
            assert body[name] == value, name
        assert body["user"].startswith("u_")


async def test_n_choices_are_each_shown(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    async with make_rig(tmp_path, fake_llm, params=ChatParams(model="fake-model", n=2)) as rig:
        fake_llm.script(Reply(texts=["first take", "second take"]))
        sink = rig.sink()
        outcome = await rig.service.handle(rig.inbound("two please"), sink)
        assert sorted(sink.texts()) == [
            "**Answer 1 of 2**\n\nfirst take",
            "**Answer 2 of 2**\n\nsecond take",
        ]
        assert outcome.text == "first take"


async def test_old_turns_left_out_are_told_once(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    async with make_rig(tmp_path, fake_llm, context_window=400, reply_tokens=100) as rig:
        long = "lorem ipsum dolor sit amet " * 12
        sinks = []
        for text in (long, long, long, "short", "short again"):
            sinks.append(rig.sink())
            await rig.service.handle(rig.inbound(text), sinks[-1])
        told = ["left them out" in sink.texts()[0] for sink in sinks]
        assert told.count(True) == 1 and not told[0]
        first_told = told.index(True)
        # The request that got the note was the first one that left turns out.
        request = rig.llm.chat_requests[first_told].json["messages"]
        assert len(request) < 2 * first_told + 2
        assert request[0]["content"] == SYSTEM and request[-1]["role"] == "user"
        assert rig.sent_messages()[-1] == ("user", "short again")


async def test_store_failure_leaves_an_explanation_and_the_service_running(rig: Rig) -> None:
    await rig.store.close()
    sink = rig.sink()
    outcome = await rig.service.handle(rig.inbound("store is down"), sink)
    assert outcome.error == "StoreError"
    assert sink.texts() == ["⚠️ Sorry, something went wrong on my side. Please try again."]


async def test_an_empty_answer_is_shown_as_such(rig: Rig) -> None:
    rig.llm.script(Reply(text=""))
    sink = rig.sink()
    outcome = await rig.service.handle(rig.inbound("say nothing"), sink)
    assert sink.texts() == ["_(The model returned an empty answer.)_"]
    assert outcome.status is TurnStatus.COMPLETE and outcome.text == ""


async def test_shutdown_mid_answer_keeps_the_partial_answer(rig: Rig) -> None:
    rig.llm.script(Reply(text="one two three four five six seven eight", delay_between=0.1))
    inbound = rig.inbound("interrupt me")
    sink = rig.sink()
    task = asyncio.create_task(rig.service.handle(inbound, sink))
    await asyncio.sleep(0.45)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    turns = await rig.store.recent(inbound.key, limit=5)
    assert [t.role for t in turns] == [Role.USER, Role.ASSISTANT]
    assert turns[1].status is TurnStatus.PARTIAL
    assert turns[1].content.startswith("one two") and "eight" not in turns[1].content
    # what the user sees is closed: the text so far and a note that the answer was cut short
    [shown] = sink.texts()
    assert shown.startswith(turns[1].content) and "the assistant was restarted" in shown
    assert turns[1].platform_message_ids == tuple(sink.message_ids)


async def test_shutdown_gives_up_closing_an_answer_after_the_grace(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    async with make_rig(tmp_path, fake_llm, shutdown_grace=0.3) as rig:
        rig.llm.script(Reply(text="one two three four five six", delay_between=0.1))
        sink = rig.sink()
        inbound = rig.inbound("interrupt me")
        task = asyncio.create_task(rig.service.handle(inbound, sink))
        await asyncio.sleep(0.35)
        sink.latency = 1000.0  # the platform stops answering
        task.cancel()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert loop.time() - started < 1.0
        turns = await rig.store.recent(inbound.key, limit=5)
        assert turns[1].status is TurnStatus.PARTIAL and turns[1].content.startswith("one")


async def test_a_command_and_the_message_after_it_keep_their_order(rig: Rig) -> None:
    await asyncio.gather(
        rig.service.handle(rig.inbound("/set temperature 0.1"), rig.sink()),
        rig.service.handle(rig.inbound("question"), rig.sink()),
    )
    assert rig.llm.chat_requests[0].json["temperature"] == 0.1


async def test_a_reply_and_the_message_after_it_keep_their_order(rig: Rig) -> None:
    first = rig.sink()
    await rig.service.handle(rig.inbound("root", thread="r"), first)
    await asyncio.gather(
        rig.service.handle(
            rig.inbound("reply", thread="x", reply_to=first.message_ids[0]), rig.sink()
        ),
        rig.service.handle(rig.inbound("after", thread="r"), rig.sink()),
    )
    assert rig.sent_messages(1)[-1] == ("user", "reply")
    assert rig.sent_messages(2)[-3:] == [
        ("user", "reply"),
        ("assistant", "echo: reply"),
        ("user", "after"),
    ]


async def test_direct_messages_are_answered_in_arrival_order(rig: Rig) -> None:
    for round_ in range(5):
        texts = [f"m{round_}-{i}" for i in range(3)]
        await asyncio.gather(
            *(rig.service.handle(rig.inbound(t, thread="", direct=True), rig.sink()) for t in texts)
        )
        sent = [r.json["messages"][-1]["content"] for r in rig.llm.chat_requests[-3:]]
        assert sent == texts


async def test_a_branch_keeps_the_settings_and_the_next_message_follows_it(rig: Rig) -> None:
    await rig.service.handle(
        rig.inbound("/set temperature 0.3", thread="", direct=True), rig.sink()
    )
    first = rig.sink()
    await rig.service.handle(rig.inbound("alpha", thread="", direct=True), first)
    await rig.service.handle(rig.inbound("beta", thread="", direct=True), rig.sink())
    await asyncio.gather(
        rig.service.handle(
            rig.inbound("back", thread="", direct=True, reply_to=first.message_ids[0]), rig.sink()
        ),
        rig.service.handle(rig.inbound("next", thread="", direct=True), rig.sink()),
    )
    branch, after = rig.llm.chat_requests[-2].json, rig.llm.chat_requests[-1].json
    assert branch["temperature"] == 0.3 and after["temperature"] == 0.3
    assert [m["content"] for m in after["messages"][1:]] == [
        "alpha",
        "echo: alpha",
        "back",
        "echo: back",
        "next",
    ]


async def test_notes_are_shown_after_an_open_code_block_not_inside_it(rig: Rig) -> None:
    rig.llm.script(
        Reply(chunks=["Sure:\n\n```python\n", "print(1)\n", "print(2)"], finish_reason="length")
    )
    sink = rig.sink()
    await rig.service.handle(rig.inbound("code"), sink)
    (text,) = sink.texts()
    assert text.endswith(
        "print(2)\n```\n\n⚠️ _The answer was cut off: it reached the length limit._"
    )


async def test_a_store_failure_after_the_answer_was_shown_adds_no_apology(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.errors import StoreError

    async def broken_append(*args: object, **kwargs: object) -> int:
        raise StoreError("disk full")

    monkeypatch.setattr(rig.store, "append", broken_append)
    sink = rig.sink()
    outcome = await rig.service.handle(rig.inbound("hello"), sink)
    assert sink.texts() == ["echo: hello"]
    assert outcome.status is TurnStatus.COMPLETE and not outcome.stored and outcome.error is None


async def test_set_max_tokens_must_leave_room_for_history(rig: Rig) -> None:
    sink = rig.sink()
    await rig.service.handle(rig.inbound("/set max_tokens 200000"), sink)
    assert "smaller than the context window" in sink.texts()[0]


async def test_names_in_other_scripts_stay_apart(rig: Rig) -> None:
    await rig.service.handle(rig.inbound("one", author="U1", name="李雷"), rig.sink())
    await rig.service.handle(rig.inbound("two", author="U2", name="韩梅梅"), rig.sink())
    await rig.service.handle(rig.inbound("three", author="U3", name="Иван Петров"), rig.sink())
    users = [m for m in rig.llm.chat_requests[-1].json["messages"] if m["role"] == "user"]
    names = [m["name"] for m in users]
    assert names[2] == "Ivan_Petrov"
    assert names[0] != names[1] and all(n.startswith("u_") for n in names[:2])
    assert "U1" not in names[0]


async def test_unaddressed_messages_are_answered_only_where_they_continue_a_conversation(
    rig: Rig,
) -> None:
    def unaddressed(text: str, **kwargs: object) -> Inbound:
        return replace(rig.inbound(text, **kwargs), addressed=False)  # type: ignore[arg-type]

    in_thread = replace(unaddressed("chatter", thread="rootA"), continues_thread=True)
    assert (await rig.service.handle(in_thread, rig.sink())).skipped is not None
    sink = rig.sink()
    first = rig.inbound("hello", thread="rootA")
    assert (await rig.service.handle(first, sink)).status is TurnStatus.COMPLETE
    joined = replace(unaddressed("more", thread="rootA"), continues_thread=True)
    assert (await rig.service.handle(joined, rig.sink())).key == first.key
    # a thread the bot is not in, and a message that may not join threads, stay unanswered
    elsewhere = replace(unaddressed("hi", thread="other"), continues_thread=True)
    assert (await rig.service.handle(elsewhere, rig.sink())).skipped is not None
    assert (await rig.service.handle(unaddressed("x", thread="rootA"), rig.sink())).skipped
    # a reply to the bot's answer continues its conversation; a reply to anything else does not
    for replied, answered in ((sink.message_ids[0], True), ("unknown", False)):
        reply = replace(
            unaddressed("and then?", thread="new", reply_to=replied), continues_reply=True
        )
        outcome = await rig.service.handle(reply, rig.sink())
        assert (outcome.key == first.key) is answered
        assert (outcome.skipped is None) is answered


async def test_a_branch_that_fails_to_start_leaves_nothing_behind_and_its_redelivery_works(
    rig: Rig,
) -> None:
    from sqlalchemy import text

    sinks = [rig.sink() for _ in range(3)]
    for word, sink in zip(("alpha", "beta", "gamma"), sinks, strict=True):
        await rig.service.handle(rig.inbound(word, thread="", direct=True), sink)
    main = await rig.store.recent(ConversationKey("test", "space", "chan", "main"), limit=1)
    async with rig.store.engine.begin() as connection:
        cid = (
            await connection.execute(
                text("SELECT conversation_id FROM messages WHERE id = :id"), {"id": main[0].id}
            )
        ).scalar_one()
        # the database refuses the copy of the second turn into any other conversation
        await connection.execute(
            text(
                "CREATE TRIGGER refuse_copy BEFORE INSERT ON messages "
                f"WHEN NEW.content = 'echo: alpha' AND NEW.conversation_id != {cid} "
                "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
            )
        )
    reply = rig.inbound(
        "back to alpha",
        thread="",
        direct=True,
        reply_to=sinks[0].message_ids[0],
        event_id="ev-branch",
    )
    failed = await rig.service.handle(reply, rig.sink())
    assert failed.error is not None
    async with rig.store.engine.begin() as connection:
        copied = await connection.execute(
            text("SELECT count(*) FROM messages WHERE conversation_id != :cid"), {"cid": cid}
        )
        assert copied.scalar_one() == 0  # no half-copied branch
        await connection.execute(text("DROP TRIGGER refuse_copy"))
    meta = await rig.store.get_meta(ConversationKey("test", "space", "chan", ""))
    assert meta.get("current_thread", "main") == "main"  # the chat still follows main
    again = await rig.service.handle(reply, rig.sink())  # the platform redelivers the event
    assert again.status is TurnStatus.COMPLETE
    assert rig.sent_messages()[1:] == [
        ("user", "alpha"),
        ("assistant", "echo: alpha"),
        ("user", "back to alpha"),
    ]


async def test_accept_holds_an_event_so_its_second_delivery_is_dropped_at_once(rig: Rig) -> None:
    inbound = rig.inbound("once", event_id="ev-twice")
    first = rig.service.accept(inbound)
    assert first is not None
    assert rig.service.accept(inbound) is None  # the twin, before anything was awaited
    sink = rig.sink()

    async def prepare(routed: Routed) -> Prepared:
        return Prepared(sink)

    assert (await rig.service.answer(first, prepare)).status is TurnStatus.COMPLETE
    later = rig.service.accept(inbound)  # redelivered after the answer: the store's claim
    assert later is not None
    assert (await rig.service.answer(later, prepare)).skipped == "duplicate"
    assert len(rig.llm.chat_requests) == 1


async def test_messages_keep_the_order_they_were_accepted_in_whatever_prepare_awaits(
    rig: Rig,
) -> None:
    slow, fast = rig.inbound("first"), rig.inbound("second")
    accepted = [rig.service.accept(slow), rig.service.accept(fast)]

    def preparing(delay: float) -> Prepare:
        async def prepare(routed: Routed) -> Prepared:
            await asyncio.sleep(delay)  # a slow author-name look-up, say
            return Prepared(rig.sink())

        return prepare

    await asyncio.gather(
        *(
            rig.service.answer(one, preparing(delay))
            for one, delay in zip(accepted, (0.3, 0.0), strict=True)
            if one is not None
        )
    )
    assert [r.json["messages"][-1]["content"] for r in rig.llm.chat_requests] == [
        "first",
        "second",
    ]


class ResumableBudgetSink(BudgetSink):
    """A test sink that says where it writes, so its answers are journaled as they stream."""

    def describe(self) -> dict[str, object]:
        return {"sink": self.name}


async def test_a_streaming_answer_is_stored_from_its_first_message_on(rig: Rig) -> None:
    limits = SinkLimits(max_length=4000, post_scopes=(POST_SCOPE,), edit_scopes=(EDIT_SCOPE,))
    sink = ResumableBudgetSink(rig.platform, limits, "resumable")
    words = " ".join(f"w{i}" for i in range(30))
    rig.llm.script(Reply(text=words, delay_between=0.1))
    key = ConversationKey("test", "space", "chan", "t1")
    task = asyncio.create_task(rig.service.handle(rig.inbound("go"), sink))
    await asyncio.sleep(0.8)  # about a quarter of the answer is showing
    assert sink.message_ids and not task.done()
    found = await rig.store.find_turn("test", sink.message_ids[0], space="space", channel="chan")
    assert found is not None and found[0] == key  # a reply to it already finds the conversation
    streaming = (await rig.store.recent(key, limit=5))[-1]
    assert streaming.status is TurnStatus.STREAMING and words.startswith(streaming.content)
    outcome = await task
    assert outcome.status is TurnStatus.COMPLETE and outcome.saves >= 2
    stored = (await rig.store.recent(key, limit=5))[-1]
    assert (stored.id, stored.content, stored.status) == (found[1], words, TurnStatus.COMPLETE)
