"""What Discord users see is what the model wrote: nothing dropped, nobody pinged.

Displayed text and pings come from `tests.fakes.render_discord` (Discord markdown and tokens
as clients draw them; pings as the server decides from the raw content and
`allowed_mentions`). The sink's own payloads are rendered: a recording stand-in for
`DiscordRest` takes what `ChannelSink` sends for each stage of a stream. The property compares
the display with the model text by `tests.fakes.model_text.without_markdown`, which removes
Markdown syntax (link syntax to the label, autolink brackets, fence lines, line-start list and
heading markers and the bullets drawn for them, backslash escapes, `* _ ~` backquote and `||`,
whitespace runs) from both sides and nothing else. Not generated: Discord's own tokens
(`<@123>`, `<t:…>`, `:smile:`), which the client draws differently by design, and multi-word
fence info strings, which Discord shows as the first code line.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings

from adapters.discord.buckets import DiscordBuckets
from adapters.discord.rest import NO_MENTIONS, RestResult
from adapters.discord.sink import MAX_LENGTH, ChannelSink
from core.streaming import Pacer
from core.streaming.sink import count_chars
from tests.fakes.model_text import model_texts, stream_stages, without_markdown
from tests.fakes.render_discord import show
from tests.fakes.virtual_clock import VirtualClock


class RecordingRest:
    """Takes every request the sink makes and answers like Discord (a message id)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.buckets = DiscordBuckets()

    async def request(
        self, method: str, path: str, payload: dict[str, Any] | None = None
    ) -> RestResult:
        self.bodies.append(dict(payload or {}))
        return RestResult(data={"id": "1"})


def test_the_renderer_pings_what_allowed_mentions_lets_through() -> None:
    content = "<@123> <@!124> <@&9> @everyone `@here` <#5> <t:0:R> [d](https://x.com) **b**"
    assert show(content, NO_MENTIONS, reply=True).pings == ()
    assert show(content).pings == ("everyone", "here", "user:123", "user:124", "role:9")
    assert show(content, {"parse": ["users"]}).pings == ("user:123", "user:124")
    assert show(content, None, reply=True).pings[-1] == "replied_user"
    assert show(content).text == (
        "@unknown-user @unknown-user @unknown-role @everyone @here #unknown [time] d b"
    )


async def test_model_mentions_do_not_ping_in_posts_edits_or_finals() -> None:
    rest = RecordingRest()
    sink = ChannelSink(rest, Pacer(VirtualClock()), "10", reply_to="7")  # type: ignore[arg-type]
    text = "Hi <@123> <@&9> @everyone @here <!channel> <div> a<b &amp;"
    key = await sink.post(text[:20])
    await sink.edit(key, text[:40])
    await sink.finalize(key, text)
    for body, reply in zip(rest.bodies, (True, False, False), strict=True):
        shown = show(body["content"], body.get("allowed_mentions"), reply=reply)
        assert shown.pings == ()
    assert show(rest.bodies[-1]["content"]).text == (
        "Hi @unknown-user @unknown-role @everyone @here <!channel> <div> a<b &amp;"
    )


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(model_texts())
async def test_every_stage_shows_the_model_text_without_markdown_and_pings_nobody(
    text: str,
) -> None:
    rest = RecordingRest()
    sink = ChannelSink(rest, Pacer(VirtualClock()), "10", reply_to="7")  # type: ignore[arg-type]
    stages = stream_stages(text, MAX_LENGTH, count_chars)
    key = await sink.post(stages[0])
    for stage in stages[1:-1]:
        await sink.edit(key, stage)
    if len(stages) > 1:
        await sink.finalize(key, stages[-1])
    assert len(rest.bodies) == len(stages)
    for index, (stage, body) in enumerate(zip(stages, rest.bodies, strict=True)):
        shown = show(body["content"], body.get("allowed_mentions"), reply=index == 0)
        assert without_markdown(shown.text) == without_markdown(stage), stage
        assert shown.pings == (), stage
