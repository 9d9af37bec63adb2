"""Stopping an answer mid-stream: partial text kept with a note, stored partial, stream closed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.conversation import ConversationKey, Role, TurnStatus
from core.llm import ChatParams
from core.stopping import STOPPED_NOTE
from tests.core.test_service import Rig, make_rig
from tests.fakes.openai_server import FakeOpenAI, Reply

WORDS = " ".join(f"word{i}" for i in range(200))
KEY = ConversationKey("test", "space", "chan", "t1")


@pytest.fixture
async def rig(tmp_path: Path, fake_llm: FakeOpenAI) -> AsyncIterator[Rig]:
    async with make_rig(tmp_path, fake_llm) as value:
        yield value


async def _when(condition: object, within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():  # type: ignore[operator]
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_stop_mid_stream_keeps_the_text_adds_a_note_and_closes_the_model_stream(
    rig: Rig,
) -> None:
    rig.llm.script(Reply(text=WORDS, delay_between=0.05), Reply())
    sink = rig.sink()
    answering = asyncio.create_task(rig.service.handle(rig.inbound("tell me"), sink))
    await _when(lambda: "word10" in "".join(sink.texts()))
    assert rig.service.stop(KEY, requested_by="U1")
    outcome = await answering
    assert outcome.stopped and outcome.stopped_by == "U1"
    assert outcome.status is TurnStatus.PARTIAL
    [shown] = sink.texts()
    text, _, note = shown.rpartition("\n\n")
    assert note == STOPPED_NOTE and sink.all_final()
    assert text.startswith("word0 word1") and WORDS.startswith(text) and text != WORDS
    [stored] = [t for t in await rig.store.recent(KEY, limit=5) if t.role is Role.ASSISTANT]
    assert stored.status is TurnStatus.PARTIAL and WORDS.startswith(stored.content)
    await _when(lambda: rig.llm.chat_requests[0].disconnected)
    assert rig.llm.chat_requests[0].content_chunks < 150  # the model stopped being read
    assert not rig.service.stop(KEY)  # nothing streams there any more

    # the conversation goes on, with the stopped answer in its history
    after = rig.sink()
    outcome = await rig.service.handle(rig.inbound("and then?"), after)
    assert outcome.status is TurnStatus.COMPLETE and after.texts() == ["echo: and then?"]
    role, content = rig.sent_messages(-1)[-2]
    assert role == "assistant" and content == stored.content


async def test_a_stop_before_the_first_token_shows_only_the_note(rig: Rig) -> None:
    rig.llm.script(Reply(text="too late", delay_first=2.0))
    sink = rig.sink()
    answering = asyncio.create_task(rig.service.handle(rig.inbound("slow one"), sink))
    await _when(lambda: len(rig.llm.chat_requests) == 1)
    await asyncio.sleep(0.1)
    assert rig.service.stop(KEY)
    outcome = await answering
    assert sink.texts() == [STOPPED_NOTE] and sink.all_final()
    assert outcome.status is TurnStatus.PARTIAL and outcome.text == ""


async def test_nothing_to_stop_and_a_finished_answer_stays_as_it_is(rig: Rig) -> None:
    assert not rig.service.stop(KEY)
    sink = rig.sink()
    outcome = await rig.service.handle(rig.inbound("quick"), sink)
    assert not rig.service.stop(KEY)
    assert outcome.status is TurnStatus.COMPLETE and not outcome.stopped
    assert sink.texts() == ["echo: quick"]


async def test_a_running_conversation_key_stops_the_answer_in_that_chat(rig: Rig) -> None:
    rig.llm.script(Reply(text=WORDS, delay_between=0.05))
    sink = rig.sink()
    answering = asyncio.create_task(rig.service.handle(rig.inbound("tell me"), sink))
    await _when(lambda: "word3" in "".join(sink.texts()))
    assert not rig.service.stop(ConversationKey("test", "space", "other", ""))
    assert rig.service.stop(ConversationKey("test", "space", "chan", ""))
    assert (await answering).stopped


async def test_a_stop_ends_every_choice(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    async with make_rig(tmp_path, fake_llm, params=ChatParams(model="fake-model", n=2)) as rig:
        rig.llm.script(Reply(texts=[WORDS, WORDS], delay_between=0.05))
        sink = rig.sink()
        answering = asyncio.create_task(rig.service.handle(rig.inbound("two please"), sink))
        await _when(lambda: sum("word5" in t for t in sink.texts()) == 2)
        assert rig.service.stop(KEY)
        outcome = await answering
        shown = sink.texts()
        assert len(shown) == 2 and all(t.endswith(STOPPED_NOTE) for t in shown)
        assert outcome.stopped and sink.all_final()


async def test_slash_stop_stops_the_askers_answer_at_once_and_says_so(rig: Rig) -> None:
    rig.llm.script(Reply(text=WORDS, delay_between=0.05), Reply())
    sink = rig.sink()
    answering = asyncio.create_task(rig.service.handle(rig.inbound("tell me"), sink))
    await _when(lambda: "word5" in "".join(sink.texts()))
    other = rig.sink()
    # someone else's /stop is refused and the answer goes on
    stranger = asyncio.create_task(
        rig.service.handle(rig.inbound("/stop", author="U2", name="Bob"), other)
    )
    await asyncio.sleep(0.3)
    assert not answering.done()  # a stranger cannot stop it
    mine = rig.sink()
    stopping = asyncio.create_task(rig.service.handle(rig.inbound("/stop"), mine))
    outcome = await asyncio.wait_for(answering, 10)
    assert outcome.stopped and outcome.stopped_by == "U1"
    assert (await stranger).text == "Only the person who asked can stop this answer."
    assert (await stopping).text == "Stopped."
    assert sink.texts()[0].endswith(STOPPED_NOTE)
    nothing = await rig.service.handle(rig.inbound("/stop"), rig.sink())
    assert nothing.text == "Nothing is being answered here."
