"""Each user's message rate: over it, a short reply says when to send again; no model call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.conversation import Role
from core.user_rate import UserRate
from tests.core.test_service import Rig, make_rig
from tests.fakes.openai_server import FakeOpenAI


@pytest.fixture
async def rig(tmp_path: Path, fake_llm: FakeOpenAI) -> AsyncIterator[Rig]:
    async with make_rig(tmp_path, fake_llm, user_rate=3) as value:
        yield value


async def test_a_fourth_message_within_a_minute_is_refused_with_when_to_retry(rig: Rig) -> None:
    for n in range(3):
        outcome = await rig.service.handle(rig.inbound(f"question {n}"), rig.sink())
        assert outcome.text == f"echo: question {n}"
    sink = rig.sink()
    refused = await rig.service.handle(rig.inbound("question 3"), sink)
    assert refused.skipped == "rate limited"
    [shown] = sink.texts()
    assert shown.startswith("⏳ You are sending more than 3 messages a minute")
    assert shown.endswith(" s.") and "Send it again in" in shown
    assert len(rig.llm.chat_requests) == 3
    # another user is not slowed down, and commands still work for the first one
    other = await rig.service.handle(rig.inbound("hello", author="U2", name="Bob"), rig.sink())
    assert other.text == "echo: hello"
    help_ = await rig.service.handle(rig.inbound("/help"), rig.sink())
    assert help_.text.startswith("I answer with a language model")
    turns = await rig.store.recent(rig.inbound("x").key, limit=50)
    assert "question 3" not in [t.content for t in turns if t.role is Role.USER]


def test_the_window_slides_and_zero_turns_it_off() -> None:
    now = [0.0]
    rate = UserRate(2, clock=lambda: now[0])
    assert rate.take("p", "u") is None and rate.take("p", "u") is None
    assert rate.take("p", "u") == pytest.approx(60.0)
    now[0] = 30.0
    assert rate.take("p", "u") == pytest.approx(30.0)
    now[0] = 60.0
    assert rate.take("p", "u") is None
    off = UserRate(0)
    assert all(off.take("p", "u") is None for _ in range(100))
