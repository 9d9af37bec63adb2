"""A create Slack applied whose response was lost: found in the thread, not posted twice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.api import SlackApi, SlackUnanswered
from adapters.slack.lost_creates import EVENT_TYPE
from adapters.slack.sink import NativeAdmission, SlackSink, SlackTarget
from core.clock import SystemClock
from core.streaming import Pacer
from tests.adapters.slack.conftest import answered, connected, slack_env
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.service_process import ThreadlineProcess
from tests.fakes.slack_server import FakeSlack

WORDS = " ".join(f"word{i}" for i in range(40))


@pytest.mark.parametrize("native", [True, False], ids=["native-stream", "post-and-update"])
async def test_a_create_whose_response_was_lost_shows_one_complete_message(
    tmp_path: Path, slack: FakeSlack, fake_llm: FakeOpenAI, native: bool
) -> None:
    fake_llm.script(Reply(text=WORDS, delay_between=0.05))
    env = slack_env(slack, fake_llm, tmp_path, SLACK_NATIVE_STREAMING=str(native).lower())
    event = slack.message("C1", "<@UBOT> tell me", user="U1")
    async with ThreadlineProcess(tmp_path, env) as service:
        await connected(service, slack)
        slack.drop_responses(1)
        await slack.send_event(event)
        texts = await answered(service, slack, "C1", event["ts"], WORDS, within=60)
    create = "chat.startStream" if native else "chat.postMessage"
    assert [c.method for c in slack.dropped] == [create]
    assert texts == [WORDS]  # one message, complete: the lost create was found and continued
    assert len(slack.calls_of(create)) == 1
    assert len(slack.calls_of("conversations.replies")) == 1
    [message] = slack.thread_messages("C1", event["ts"])
    assert message.metadata is not None and message.metadata["event_type"] == EVENT_TYPE


@pytest.fixture
async def api(slack: FakeSlack) -> AsyncIterator[SlackApi]:
    async with aiohttp.ClientSession() as session:
        client = AsyncWebClient(
            token=slack.bot_token, base_url=slack.api_url, session=session, retry_handlers=[]
        )
        api = SlackApi(client, Pacer(SystemClock()))
        api.bot_id = slack.bot_id
        yield api


def _sink(api: SlackApi, *, native: bool) -> SlackSink:
    target = SlackTarget("T0FAKE", "T0FAKE", "C1", "1700000000.000001", "U1", is_dm=False)
    return SlackSink(
        api, target, native=native, admission=NativeAdmission(native), status_off=set()
    )


async def test_a_lost_create_that_slack_did_not_keep_is_posted_again(
    slack: FakeSlack, api: SlackApi
) -> None:
    sink = _sink(api, native=False)
    slack.drop_responses(1)
    with pytest.raises(SlackUnanswered):
        await sink.post("first part")
    [lost] = slack.thread_messages("C1", "1700000000.000001")
    slack.messages[lost.ts].deleted = True  # e.g. removed by someone before the retry
    ts = await sink.post("first part, longer")
    assert ts != lost.ts
    assert slack.thread_text("C1", "1700000000.000001") == ["first part, longer"]


async def test_a_later_part_is_not_mistaken_for_an_earlier_one(
    slack: FakeSlack, api: SlackApi
) -> None:
    sink = _sink(api, native=False)
    first = await sink.post("part one")
    await sink.finalize(first, "part one")
    slack.drop_responses(1)
    with pytest.raises(SlackUnanswered):
        await sink.post("part two")
    second = await sink.post("part two, more")
    assert second != first
    assert slack.thread_text("C1", "1700000000.000001") == ["part one", "part two, more"]
    assert len(slack.calls_of("chat.postMessage")) == 2


async def test_another_answers_stream_is_not_adopted(slack: FakeSlack, api: SlackApi) -> None:
    earlier = _sink(api, native=True)
    done = await earlier.post("earlier answer")
    await earlier.finalize(done, "earlier answer")  # tagged as it stops
    sink = _sink(api, native=True)
    slack.drop_responses(1)
    with pytest.raises(SlackUnanswered):
        await sink.post("new answer")
    ts = await sink.post("new answer grows")
    await sink.finalize(ts, "new answer grows, done")
    assert slack.thread_text("C1", "1700000000.000001") == [
        "earlier answer",
        "new answer grows, done",
    ]
