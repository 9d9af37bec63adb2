"""Unit tests: Markdown to mrkdwn, event parsing, and the sink against the fake Slack."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack import (
    NativeAdmission,
    SlackApi,
    SlackSink,
    SlackTarget,
    parse_message,
    to_inbound,
    to_markdown_text,
    to_mrkdwn,
)
from adapters.slack.sink import _settled
from core.clock import SystemClock
from core.errors import SinkGone, SinkRateLimited
from core.streaming import Pacer, StreamDriver
from tests.fakes.slack_server import LIVE_MENTION, FakeSlack, Tier


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("**bold** and *italic* and ~~gone~~", "*bold* and _italic_ and ~gone~"),
        ("# Title\n## Sub", "*Title*\n*Sub*"),
        ("- one\n* two", "• one\n• two"),
        ("[site](https://a.b/?x=1&y=2)", "<https://a.b/?x=1&amp;y=2|site>"),
        ("[x](!channel) [y](@U1)", "[x](!channel) [y](@U1)"),
        ("a < b && c > d", "a &lt; b &amp;&amp; c &gt; d"),
        ("```python\nif a < b:\n    **x**\n```", "```\nif a &lt; b:\n    **x**\n```"),
        ("use `**x** <y>` here", "use `**x** &lt;y&gt;` here"),
        ("2**10 and 3*4*5", "2**10 and 3*4*5"),
    ],
)
def test_markdown_becomes_mrkdwn(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn


@pytest.mark.parametrize(
    "hostile",
    ["<!channel>", "<!here>", "<!everyone>", "<@U123>", "<!subteam^S1|team>", "<@W1|x>"],
)
def test_model_output_cannot_mention_anyone(hostile: str) -> None:
    for text in (f"hi {hostile}", f"**{hostile}**", f"`{hostile}`", f"```\n{hostile}\n```"):
        assert LIVE_MENTION.search(to_mrkdwn(text)) is None
        assert LIVE_MENTION.search(to_markdown_text(text)) is None


def test_markdown_text_escaping_is_per_character() -> None:
    a, b = "x < y & ", "z > w"
    assert to_markdown_text(a + b) == to_markdown_text(a) + to_markdown_text(b)


def _body(event: dict[str, Any], **outer: Any) -> dict[str, Any]:
    return {"type": "event_callback", "team_id": "T1", "event": event, **outer}


def test_parse_message_keys_threads_and_workspaces() -> None:
    event = {
        "type": "message",
        "channel": "C1",
        "user": "U1",
        "text": "<@UB> hi &lt;b&gt;",
        "ts": "2.0",
        "thread_ts": "1.0",
        "channel_type": "channel",
    }
    message = parse_message(_body(event), bot_user_id="UB")
    assert message is not None
    assert message.mentioned and not message.is_dm
    assert message.text == "hi <b>"
    assert (message.key.space, message.key.channel, message.key.thread) == ("T1", "C1", "1.0")
    assert message.event_id == "C1:2.0"
    grid = parse_message(_body(event, enterprise_id="E1"), bot_user_id="UB")
    assert grid is not None and grid.space == "E1:T1"
    mention = parse_message(_body({**event, "type": "app_mention"}), bot_user_id="UB")
    assert mention is not None and mention.event_id == message.event_id  # one id, two events
    inbound = to_inbound(message, require_mention=False)
    assert inbound.event_id == "C1:2.0" and inbound.author_name == "U1"
    shared = parse_message(_body({**event, "user_team": "T2"}), bot_user_id="UB")
    assert shared is not None and (shared.space, shared.user_team) == ("T1", "T2")


@pytest.mark.parametrize(
    "changes",
    [
        {"subtype": "message_changed"},
        {"subtype": "bot_message"},
        {"bot_id": "B1"},
        {"user": "UB"},
        {"user": None},
        {"text": "<@UB>"},
        {"type": "reaction_added"},
    ],
)
def test_parse_message_ignores_what_is_not_a_user_talking(changes: dict[str, Any]) -> None:
    event = {"type": "message", "channel": "C1", "user": "U1", "text": "hello", "ts": "1.0"}
    event.update(changes)
    assert parse_message(_body(event), bot_user_id="UB") is None


def test_who_gets_answered() -> None:
    base = {"type": "message", "user": "U1", "text": "hello", "ts": "2.0"}
    dm = parse_message(_body({**base, "channel": "D1", "channel_type": "im"}), bot_user_id="UB")
    reply = parse_message(_body({**base, "channel": "C1", "thread_ts": "1.0"}), bot_user_id="UB")
    top = parse_message(_body({**base, "channel": "C1"}), bot_user_id="UB")
    assert dm is not None and reply is not None and top is not None
    assert to_inbound(dm, require_mention=True).addressed
    unmentioned = to_inbound(reply, require_mention=False)
    assert not unmentioned.addressed and unmentioned.continues_thread  # the core decides
    assert not to_inbound(reply, require_mention=True).continues_thread
    top_level = to_inbound(top, require_mention=False)
    assert not top_level.addressed and not top_level.continues_thread


def test_settled_prefix_never_includes_display_closers() -> None:
    assert _settled("```py\nx = 1\n```") == "```py\nx = 1"
    assert _settled("a **b c**") == "a **b c"
    assert _settled("a ~~b~~ ") == "a ~~b"
    assert _settled("plain words") == "plain words"


async def _sink_setup(slack: FakeSlack) -> tuple[aiohttp.ClientSession, SlackApi, Pacer]:
    session = aiohttp.ClientSession()
    client = AsyncWebClient(
        token=slack.bot_token, base_url=slack.api_url, session=session, retry_handlers=[]
    )
    pacer = Pacer(SystemClock())
    return session, SlackApi(client, pacer), pacer


def _target(channel: str = "C1") -> SlackTarget:
    return SlackTarget("T0FAKE", "T0FAKE", channel, "1.0", "U1", channel.startswith("D"))


async def test_native_stream_appends_only_settled_text_and_stops_with_the_rest() -> None:
    async with FakeSlack() as slack:
        session, api, pacer = await _sink_setup(slack)
        try:
            sink = SlackSink(
                api, _target(), native=True, admission=NativeAdmission(True), status_off=set()
            )
            driver = StreamDriver(pacer)
            stream = driver.open(sink)
            await stream.start()
            text = ""
            final = "Intro **bold words** here\n\n```python\nprint(1)\nprint(2)\n```\nDone."
            for char in final:
                text += char
                stream.update(text)
                await asyncio.sleep(0.03)
            result = await stream.finish(final)
        finally:
            await session.close()
    assert result.delivered
    (message,) = slack.messages.values()
    assert message.final and message.visible == final
    # every appended chunk extended the text: no closer was sent and removed, no chat.update
    assert slack.calls_of("chat.update") == []
    for (_, before), (_, after) in zip(message.history, message.history[1:], strict=False):
        assert after.startswith(before)
    assert len(slack.calls_of("chat.appendStream")) >= 1
    start = slack.calls_of("chat.startStream")[0].args
    assert start["recipient_user_id"] == "U1" and start["recipient_team_id"] == "T0FAKE"


async def test_sink_translates_slack_errors() -> None:
    tiers = {"chat.postMessage": Tier(1, 1, "channel")}
    async with FakeSlack(tiers=tiers) as slack:
        slack.missing_channels.add("C404")
        session, api, _ = await _sink_setup(slack)
        try:
            fallback = SlackSink(
                api, _target(), native=False, admission=NativeAdmission(False), status_off=set()
            )
            ts = await fallback.post("first")
            with pytest.raises(SinkRateLimited) as limited:
                await fallback.post("second")
            assert limited.value.retry_after >= 1
            with pytest.raises(SinkGone):
                await fallback.edit("999.999", "nope")
            gone = SlackSink(
                api,
                _target("C404"),
                native=False,
                admission=NativeAdmission(False),
                status_off=set(),
            )
            with pytest.raises(SinkGone):
                await gone.post("x")
            await fallback.finalize(ts, "first, final")
        finally:
            await session.close()
    assert slack.rate_limited == 1
    assert slack.messages[ts].visible == "first, final"


async def test_status_errors_are_remembered_and_not_fatal() -> None:
    async with FakeSlack() as slack:
        slack.status_error = "not_allowed"
        session, api, _ = await _sink_setup(slack)
        off: set[str] = set()
        try:
            for _ in range(2):
                sink = SlackSink(
                    api, _target(), native=False, admission=NativeAdmission(False), status_off=off
                )
                await sink.show_typing()
        finally:
            await session.close()
    assert off == {"T0FAKE:channel"}
    assert len(slack.calls_of("assistant.threads.setStatus")) == 1


async def test_fake_checks_tokens_like_slack() -> None:
    async with FakeSlack() as slack, aiohttp.ClientSession() as session:

        async def call(method: str, token: str) -> dict[str, Any]:
            headers = {"Authorization": f"Bearer {token}"}
            async with session.post(slack.api_url + method, json={}, headers=headers) as reply:
                body: dict[str, Any] = await reply.json()
                return body

        assert (await call("auth.test", "xoxb-wrong"))["error"] == "invalid_auth"
        assert (await call("auth.test", slack.bot_token))["user_id"] == slack.bot_user_id
        refused = await call("apps.connections.open", slack.bot_token)
        assert refused["error"] == "not_allowed_token_type"
        opened = await call("apps.connections.open", slack.app_token)
        assert opened["url"].startswith(f"ws://127.0.0.1:{slack.port}/socket?ticket=")
