"""HTTP Events API mode end to end: signatures, challenge, fast acks, retries; and two processes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.adapters.slack.conftest import (
    answered,
    connected,
    free_port,
    listening,
    settle,
    slack_env,
)
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.service_process import ThreadlineProcess
from tests.fakes.slack_server import FakeSlack, post_signed_event


async def test_http_events_are_verified_acknowledged_fast_and_answered_once(
    tmp_path: Path, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/slack/events"
    secret = slack.signing_secret
    # the model takes 4 s to start: acks must not wait for it
    fake_llm.script(Reply(text="answered over http", delay_first=4.0))
    env = slack_env(slack, fake_llm, tmp_path, http_port=port)
    async with ThreadlineProcess(tmp_path, env) as service:
        await listening(service)
        status, body, _ = await post_signed_event(
            url, {"type": "url_verification", "challenge": "abc123", "token": "t"}, secret
        )
        assert (status, body) == (200, '{"challenge": "abc123"}')

        event = slack.message("C1", f"<@{slack.bot_user_id}> over http")
        payload = slack.event_payload(event)
        # forged: wrong secret, tampered body, stale timestamp, missing headers
        forged = [
            await post_signed_event(url, payload, "not-the-secret"),
            await post_signed_event(url, payload, secret, timestamp=int(time.time()) - 400),
            await post_signed_event(url, payload, secret, signature="v0=" + "0" * 64),
        ]
        assert [status for status, _, _ in forged] == [401, 401, 401]
        await settle(0.3)
        assert fake_llm.chat_requests == [] and slack.messages == {}

        status, _, took = await post_signed_event(url, payload, secret)
        assert status == 200 and took < 3.0
        mention = slack.event_payload(slack.app_mention(event))
        status, _, took = await post_signed_event(url, mention, secret)
        assert status == 200 and took < 3.0
        # Slack retries (it did not see our ack in time): same event_id, X-Slack-Retry-Num
        for attempt in (1, 2):
            status, _, took = await post_signed_event(url, payload, secret, retry_num=attempt)
            assert status == 200 and took < 3.0
        await answered(service, slack, "C1", event["ts"], "answered over http")
        await settle()
    assert len(fake_llm.chat_requests) == 1
    assert len(slack.thread_messages("C1", event["ts"])) == 1
    assert "refused a slack request with a bad signature" in service.output


@pytest.mark.postgres
async def test_two_processes_sharing_postgres_answer_a_twice_delivered_event_once(
    tmp_path: Path, slack: FakeSlack, fake_llm: FakeOpenAI, postgres_url: str
) -> None:
    fake_llm.script(Reply(text="one answer", delay_first=0.3))
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    first_dir.mkdir()
    second_dir.mkdir()
    env_a = slack_env(slack, fake_llm, first_dir, database_url=postgres_url)
    env_b = slack_env(slack, fake_llm, second_dir, database_url=postgres_url)
    async with ThreadlineProcess(first_dir, env_a) as first:
        await connected(first, slack, 1)
        async with ThreadlineProcess(second_dir, env_b) as second:
            await connected(second, slack, 2)
            event = slack.message("C1", f"<@{slack.bot_user_id}> who answers?")
            envelope = await slack.send_event(event, socket=0)
            # Slack redelivers to the other connection (and sends app_mention there too)
            await asyncio.gather(
                slack.redeliver(envelope, socket=1),
                slack.send_event(slack.app_mention(event), socket=1),
            )
            await answered(first, slack, "C1", event["ts"], "one answer")
            await settle(1.0)
    assert len(fake_llm.chat_requests) == 1
    assert len(slack.thread_messages("C1", event["ts"])) == 1
    assert len(slack.acks) == 3
