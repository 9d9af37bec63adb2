"""End to end through `threadline run` in Socket Mode against the fake Slack and a fake LLM."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from tests.adapters.slack.conftest import USERS, answered, connected, settle, slack_env
from tests.fakes.openai_server import FakeOpenAI, Fault, Reply
from tests.fakes.service_process import ThreadlineProcess
from tests.fakes.slack_server import DEFAULT_TIERS, FakeSlack, Tier


def mention(slack: FakeSlack, text: str) -> str:
    return f"<@{slack.bot_user_id}> {text}"


async def test_three_turn_thread_sends_exactly_the_earlier_exchanges(
    tmp_path: Path, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    async with ThreadlineProcess(tmp_path, slack_env(slack, fake_llm, tmp_path)) as service:
        await connected(service, slack)
        first = slack.message("C1", mention(slack, "what is a token bucket?"), user="U1")
        await slack.send_event(first)
        await slack.send_event(slack.app_mention(first))  # Slack sends both for a mention
        root = first["ts"]
        await answered(service, slack, "C1", root, "echo: what is a token bucket?")
        # a reply in the thread, no mention: the bot takes part already, so it answers
        second = slack.message("C1", "and a leaky one?", user="U2", thread_ts=root)
        await slack.send_event(second)
        await answered(
            service, slack, "C1", root, "echo: what is a token bucket?echo: and a leaky one?"
        )
        third = slack.message("C1", "which is better?", user="U1", thread_ts=root)
        await slack.send_event(third)
        await answered(
            service,
            slack,
            "C1",
            root,
            "echo: what is a token bucket?echo: and a leaky one?echo: which is better?",
        )
        # chatter in another thread of the channel, without a mention, is not answered
        other = slack.message("C1", "unrelated", user="U3")
        await slack.send_event(other)
        await settle()
    assert len(fake_llm.chat_requests) == 3
    messages = fake_llm.chat_requests[2].json["messages"]
    assert [(m["role"], m["content"], m.get("name")) for m in messages[1:]] == [
        ("user", "what is a token bucket?", "Ada_Lovelace"),
        ("assistant", "echo: what is a token bucket?", None),
        ("user", "and a leaky one?", "Grace_Hopper"),
        ("assistant", "echo: and a leaky one?", None),
        ("user", "which is better?", "Ada_Lovelace"),
    ]
    assert slack.thread_messages("C1", other["ts"]) == []
    counts = slack.method_counts()
    assert counts["conversations.replies"] == 0  # history comes from the store
    assert counts["users.info"] == 2  # one lookup per author, cached
    assert slack.rate_limited == 0
    # the answers are replies in the thread of the mention
    assert all(m.thread_ts == root for m in slack.thread_messages("C1", root))


async def test_model_mentions_are_delivered_inert_in_both_formats(
    tmp_path: Path, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    hostile = (
        "Hey <!channel> and <!here> and <!everyone>, ping <@U123> and <!subteam^S1>; "
        "see **[docs](https://example.com/a?b=1&c=2)** & [x](!channel) `a<b>c`"
    )
    fake_llm.script(Reply(text=hostile), Reply(text=hostile), Reply(text=hostile))
    env = slack_env(slack, fake_llm, tmp_path)
    async with ThreadlineProcess(tmp_path, env) as service:
        await connected(service, slack)
        native = slack.message("C1", mention(slack, "say it"))
        await slack.send_event(native)
        await answered(service, slack, "C1", native["ts"], lambda texts: bool(texts))
        slack.native_streaming = False  # this answer falls back: postMessage, markdown_text
        switched = slack.message("C3", mention(slack, "say it again"))
        await slack.send_event(switched)
        await answered(service, slack, "C3", switched["ts"], lambda texts: bool(texts))
        fallback = slack.message("C2", mention(slack, "and again"))  # mrkdwn from now on
        await slack.send_event(fallback)
        await answered(service, slack, "C2", fallback["ts"], lambda texts: bool(texts))
    assert slack.live_mentions == []
    assert slack.link_names_used == 0
    (streamed,) = slack.thread_messages("C1", native["ts"])
    assert streamed.markdown and streamed.visible == hostile
    (switched_message,) = slack.thread_messages("C3", switched["ts"])
    assert switched_message.markdown and switched_message.visible == hostile
    (posted,) = slack.thread_messages("C2", fallback["ts"])
    assert not posted.markdown
    assert "&lt;!channel&gt;" in posted.text and "&lt;@U123&gt;" in posted.text
    assert "<https://example.com/a?b=1&amp;c=2|docs>" in posted.text  # our link, escaped URL
    assert "[x](!channel)" in posted.text  # not a link Slack would resolve


async def test_100_concurrent_answers_in_one_workspace_never_hit_a_429(
    tmp_path: Path, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    count, channels = 100, 10
    fake_llm.script(*[Reply(delay_between=0.08) for _ in range(count)])
    questions = {}
    # one user asks all 100: the per-user limits are not what this test measures
    env = slack_env(
        slack,
        fake_llm,
        tmp_path,
        THREADLINE_USER_RATE="0",
        THREADLINE_USER_CONCURRENT_ANSWERS="1000",
        THREADLINE_USER_QUEUE="1000",
    )
    async with ThreadlineProcess(tmp_path, env) as service:
        await connected(service, slack)
        for index in range(count):
            channel = f"C{index % channels}"
            words = " ".join(f"word{index}-{n}" for n in range(20))
            event = slack.message(channel, mention(slack, f"question {index} {words}"))
            questions[(channel, event["ts"])] = f"echo: question {index} {words}"
            await slack.send_event(event)

        def all_done() -> bool:
            return all(
                slack.thread_final(channel, ts) and "".join(slack.thread_text(channel, ts)) == text
                for (channel, ts), text in questions.items()
            )

        await service.wait_until(all_done, within=80, what="every answer complete")
    assert slack.rate_limited == 0, slack.rate_limited_by_method
    assert slack.live_mentions == []
    counts = slack.method_counts(writes_only=True)
    assert counts["chat.startStream"] >= 1  # some answers streamed natively
    assert counts["chat.postMessage"] >= 1  # the others used the paced fallback
    assert counts["chat.startStream"] <= 20  # Tier 2: the rest did not queue for minutes


async def test_a_429_pauses_its_scope_and_the_answers_still_complete(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    # a stricter Slack than the service assumes: one post per channel every 2 s, no burst
    tiers = dict(DEFAULT_TIERS)
    tiers["chat.postMessage"] = Tier(30, 1, "channel")
    async with FakeSlack(tiers=tiers, enterprise_id="E1", users=USERS) as slack:
        env = slack_env(slack, fake_llm, tmp_path, SLACK_NATIVE_STREAMING="false")
        async with ThreadlineProcess(tmp_path, env) as service:
            await connected(service, slack)
            events = [slack.message("C1", mention(slack, f"burst {n}")) for n in range(3)]
            for event in events:
                await slack.send_event(event)
            for n, event in enumerate(events):
                await answered(service, slack, "C1", event["ts"], f"echo: burst {n}")
            # Slack asks for a fresh connection: the service reconnects and keeps answering
            await slack.disconnect()
            await service.wait_until(
                lambda: slack.socket_connects >= 2 and bool(slack.sockets),
                within=10,
                what="the reconnection",
            )
            later = slack.message("C2", mention(slack, "after reconnect"))
            await slack.send_event(later)
            await answered(service, slack, "C2", later["ts"], "echo: after reconnect")
            assert service.running
    assert slack.rate_limited >= 1
    assert set(slack.rate_limited_by_method) == {"chat.postMessage"}


def _reassemble(parts: list[str]) -> str:
    """The answer from its split parts: a fence closed at a cut and reopened after it is joined."""
    text = parts[0]
    for part in parts[1:]:
        reopened = re.match(r"```[^\n]*\n", part)
        if reopened and text.endswith("\n```"):
            text = text[: -len("\n```")] + "\n" + part[len(reopened.group(0)) :]
        else:
            text += "\n\n" + part
    return text


def _long_answer() -> str:
    blocks = []
    for index in range(22):
        blocks.append(f"Paragraph {index}: " + " ".join(f"w{index}x{n}" for n in range(40)))
        code = "\n".join(f"    value_{index}_{n} = compute({n}) + {index}" for n in range(8))
        blocks.append(f"```python\ndef f{index}():\n{code}\n```")
    text = "\n\n".join(blocks)
    assert 11_500 <= len(text) <= 13_000, len(text)
    return text


@pytest.mark.parametrize("native", [True, False], ids=["native", "fallback"])
async def test_a_long_answer_is_split_without_cutting_code_blocks(
    tmp_path: Path, slack: FakeSlack, fake_llm: FakeOpenAI, native: bool
) -> None:
    answer = _long_answer()
    fake_llm.script(Reply(text=answer, delay_between=0.0005))
    # mrkdwn has no info strings: ```python shows as ```
    shown = answer if native else answer.replace("```python", "```")
    env = slack_env(slack, fake_llm, tmp_path, SLACK_NATIVE_STREAMING=str(native).lower())
    async with ThreadlineProcess(tmp_path, env) as service:
        await connected(service, slack)
        event = slack.message("C1", mention(slack, "long one"))
        await slack.send_event(event)
        parts = await answered(
            service, slack, "C1", event["ts"], lambda texts: _reassemble(texts) == shown
        )
    messages = slack.thread_messages("C1", event["ts"])
    assert all(m.markdown is native for m in messages)
    limit = 12_000 if native else 4_000
    assert all(len(m.text) <= limit for m in messages)
    assert len(parts) >= (2 if native else 4)
    for part in parts:
        assert part.count("```") % 2 == 0, part[:200]  # every part's fences are balanced
        # cuts land between paragraphs and code blocks, never inside a block
        assert part.startswith(("Paragraph", "```python\ndef", "```\ndef")), part[:80]
    assert not [c for c in slack.errors if c.error == "msg_too_long"]
    assert slack.rate_limited == 0


async def test_llm_failure_mid_stream_leaves_the_partial_answer_and_a_note(
    tmp_path: Path, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    words = " ".join(f"part{n}" for n in range(12))
    fake_llm.script(
        Fault.drop_mid_stream(after_chunks=6, reply=Reply(text=words, delay_between=0.05)),
        Fault.drop_mid_stream(after_chunks=6, reply=Reply(text=words, delay_between=0.05)),
    )
    async with ThreadlineProcess(tmp_path, slack_env(slack, fake_llm, tmp_path)) as service:
        await connected(service, slack)
        native = slack.message("C1", mention(slack, "go"))
        await slack.send_event(native)
        slack_note = "The answer stopped early"
        texts = await answered(
            service, slack, "C1", native["ts"], lambda t: slack_note in "".join(t)
        )
        slack.native_streaming = False
        fallback = slack.message("C2", mention(slack, "go"))
        await slack.send_event(fallback)
        fallback_texts = await answered(
            service, slack, "C2", fallback["ts"], lambda t: slack_note in "".join(t)
        )
        assert service.running
    for got in ("".join(texts), "".join(fallback_texts)):
        assert got.startswith("part0 part1"), got
        assert "part11" not in got


async def test_stream_expiry_is_finished_with_chat_update(
    tmp_path: Path, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    answer = " ".join(f"slow{n}" for n in range(30))
    fake_llm.script(Reply(text=answer, delay_between=0.05))
    slack.stream_ttl = 0.4  # streams expire after 0.4 s, mid-answer
    async with ThreadlineProcess(tmp_path, slack_env(slack, fake_llm, tmp_path)) as service:
        await connected(service, slack)
        event = slack.message("D1", "tell me slowly")  # a DM: every message is answered
        await slack.send_event(event)
        await answered(service, slack, "D1", event["ts"], answer)
    (message,) = slack.thread_messages("D1", event["ts"])
    assert message.final and not message.expired
    expired = [c for c in slack.errors if c.error == "message_not_in_streaming_state"]
    assert expired, "the stream should have expired during the answer"
    assert slack.calls_of("chat.update"), "an expired stream is finished with chat.update"
    assert slack.calls_of("chat.update")[-1].args["ts"] == message.ts


async def test_native_stream_unavailable_falls_back_and_remembers(
    tmp_path: Path, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    slack.native_streaming = False
    async with ThreadlineProcess(tmp_path, slack_env(slack, fake_llm, tmp_path)) as service:
        await connected(service, slack)
        for n in range(3):
            event = slack.message("C1", mention(slack, f"question {n}"))
            await slack.send_event(event)
            await answered(service, slack, "C1", event["ts"], f"echo: question {n}")
    # the first answer tried a stream, found it unavailable and never tried again
    assert len(slack.calls_of("chat.startStream")) == 1
    assert "native streaming unavailable" in service.output
    assert len(slack.calls_of("chat.postMessage")) == 3


async def test_redelivered_and_duplicate_events_are_answered_once(
    tmp_path: Path, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(Reply(text="only once", delay_between=0.02))
    async with ThreadlineProcess(tmp_path, slack_env(slack, fake_llm, tmp_path)) as service:
        await connected(service, slack)
        event = slack.message("C1", mention(slack, "once please"))
        first = await slack.send_event(event)
        await slack.send_event(slack.app_mention(event))
        await slack.redeliver(first)  # Slack's retry: same event_id, retry_attempt 1
        await answered(service, slack, "C1", event["ts"], "only once")
        await service.wait_until(lambda: len(slack.acks) == 3, within=5, what="three acks")
        await slack.redeliver(first)
        await service.wait_until(lambda: len(slack.acks) == 4, within=5, what="four acks")
        await settle()
    assert len(fake_llm.chat_requests) == 1
    assert len(slack.thread_messages("C1", event["ts"])) == 1
    for envelope_id, sent_at in slack.envelopes_sent.items():
        assert slack.acks[envelope_id] - sent_at < 3.0  # acknowledged within 3 s


async def test_dms_threads_and_ignored_messages(
    tmp_path: Path, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    async with ThreadlineProcess(tmp_path, slack_env(slack, fake_llm, tmp_path)) as service:
        await connected(service, slack)
        top = slack.message("D1", "first dm")
        await slack.send_event(top)
        await answered(service, slack, "D1", top["ts"], "echo: first dm")
        reply = slack.message("D1", "more in the thread", thread_ts=top["ts"])
        await slack.send_event(reply)
        await answered(service, slack, "D1", top["ts"], "echo: first dmecho: more in the thread")
        other = slack.message("D1", "a new topic")  # top level again: a new conversation
        await slack.send_event(other)
        await answered(service, slack, "D1", other["ts"], "echo: a new topic")
        # never answered: the bot itself, other bots, edits and other subtypes
        ignored = [
            slack.message("D1", "from me", user=slack.bot_user_id),
            slack.message("D1", "from a bot", bot_id="B999"),
            slack.message("D1", "edited", subtype="message_changed"),
            slack.message("D1", "gone", subtype="message_deleted"),
            slack.message("C1", "no mention, no thread"),
        ]
        for event in ignored:
            await slack.send_event(event)
        await settle()
    assert len(fake_llm.chat_requests) == 3
    third = fake_llm.chat_requests[2].json["messages"]
    assert [m["content"] for m in third[1:]] == ["a new topic"]  # its own conversation
    second = fake_llm.chat_requests[1].json["messages"]
    assert [m["content"] for m in second[1:]] == [
        "first dm",
        "echo: first dm",
        "more in the thread",
    ]
    assert all("name" not in m for m in second)  # DMs need no author names
    assert slack.calls_of("users.info") == []


async def test_assistant_threads_get_prompts_title_and_answers(
    tmp_path: Path, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    async with ThreadlineProcess(tmp_path, slack_env(slack, fake_llm, tmp_path)) as service:
        await connected(service, slack)
        thread_ts = slack.next_ts()
        started = {
            "type": "assistant_thread_started",
            "assistant_thread": {
                "user_id": "U1",
                "context": {"channel_id": "C1", "team_id": slack.team_id},
                "channel_id": "D9",
                "thread_ts": thread_ts,
            },
            "event_ts": thread_ts,
        }
        await slack.send_event(started)
        await service.wait_until(
            lambda: bool(slack.titles) and bool(slack.suggested_prompts),
            within=10,
            what="prompts and title",
        )
        question = slack.message("D9", "hi assistant", thread_ts=thread_ts)
        await slack.send_event(question)
        await answered(service, slack, "D9", thread_ts, "echo: hi assistant")
    assert slack.titles[0][:2] == ("D9", thread_ts)
    assert slack.suggested_prompts[0]["channel_id"] == "D9"
    assert ("D9", thread_ts, "is thinking…") in slack.statuses


async def test_require_mention_and_a_vanished_channel(
    tmp_path: Path, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    env = slack_env(slack, fake_llm, tmp_path, SLACK_REQUIRE_MENTION="true")
    slack.not_in_channels.add("C9")
    async with ThreadlineProcess(tmp_path, env) as service:
        await connected(service, slack)
        root = slack.message("C1", mention(slack, "start"))
        await slack.send_event(root)
        await answered(service, slack, "C1", root["ts"], "echo: start")
        await slack.send_event(slack.message("C1", "no mention", thread_ts=root["ts"]))
        lost = slack.message("C9", mention(slack, "you are not here"))
        await slack.send_event(lost)
        await service.wait_until(
            lambda: any(c.error == "not_in_channel" for c in slack.errors),
            within=10,
            what="the refused write",
        )
        again = slack.message("C1", mention(slack, "with mention"), thread_ts=root["ts"])
        await slack.send_event(again)
        await answered(service, slack, "C1", root["ts"], "echo: startecho: with mention")
        assert service.running
    assert len(fake_llm.chat_requests) == 3
    assert "Traceback" not in service.output


async def test_tokens_never_reach_the_logs(
    tmp_path: Path, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    env = slack_env(slack, fake_llm, tmp_path, THREADLINE_LOG_LEVEL="DEBUG")
    async with ThreadlineProcess(tmp_path, env) as service:
        await connected(service, slack)
        event = slack.message("C1", mention(slack, "hello"))
        await slack.send_event(event)
        await answered(service, slack, "C1", event["ts"], "echo: hello")
    for secret in (slack.bot_token, slack.app_token, "sk-slack-test-secret"):
        assert secret not in service.output
    for trouble in ("Traceback", "Task was destroyed", "Unclosed", "never awaited"):
        assert trouble not in service.output
    assert "ticket=" not in service.output  # the socket URL's ticket is a credential too


async def test_a_refused_bot_token_stops_the_service_with_a_clear_error(
    tmp_path: Path, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    env = slack_env(slack, fake_llm, tmp_path, SLACK_BOT_TOKEN="xoxb-revoked-token-999")
    service = ThreadlineProcess(tmp_path, env)
    await service.start()
    await service.wait_until(lambda: not service.running or "SLACK_BOT_TOKEN" in service.output)
    code = await service.stop()
    assert code != 0
    assert "SLACK_BOT_TOKEN: Slack refused it (invalid_auth)" in service.output
    assert "xoxb-revoked-token-999" not in service.output


async def test_two_messages_50ms_apart_are_answered_in_order_despite_a_slow_users_info(
    tmp_path: Path, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    slack.users_info_delay["U1"] = 1.0  # the first author's name takes a second to look up
    async with ThreadlineProcess(tmp_path, slack_env(slack, fake_llm, tmp_path)) as service:
        await connected(service, slack)
        root = slack.message("C1", mention(slack, "start"), user="U3")
        await slack.send_event(root)
        await answered(service, slack, "C1", root["ts"], "echo: start")
        first = slack.message("C1", mention(slack, "first"), user="U1", thread_ts=root["ts"])
        second = slack.message("C1", mention(slack, "second"), user="U2", thread_ts=root["ts"])
        await slack.send_event(first)
        await asyncio.sleep(0.05)
        await slack.send_event(second)
        await answered(service, slack, "C1", root["ts"], "echo: startecho: firstecho: second")
    assert len(fake_llm.chat_requests) == 3
    last = fake_llm.chat_requests[2].json["messages"]
    assert [(m["content"], m.get("name")) for m in last[1:]] == [
        ("start", "Alan_Turing"),
        ("echo: start", None),
        ("first", "Ada_Lovelace"),
        ("echo: first", None),
        ("second", "Grace_Hopper"),
    ]
