"""What Telegram users see is what the model wrote: nothing dropped, nobody mentioned.

Displayed text comes from `tests.fakes.render_telegram` (text + entities applied like the Bot
API and TDLib, `@username` and `tg://user` links detected as mentions). The property compares
it with the model text by `tests.fakes.model_text.without_markdown`, which removes Markdown
syntax (link syntax to the label, fence lines, line-start list and heading markers and the
symbols drawn for them, backslash escapes, `* _ ~` backquote and `||`, whitespace runs) from
both sides and nothing else. Every stage of a stream is checked: each preview the driver
would show, then the final text, and the plain-text fallback of each.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from telegram import Bot
from telegram.request import HTTPXRequest

from adapters.telegram import Target, TelegramSink
from adapters.telegram.format import MAX_MESSAGE_LENGTH, render, rendered_length
from core.streaming.split import GrowingPreview, finish_text, visible_preview
from tests.fakes.model_text import model_texts, stream_stages, without_markdown
from tests.fakes.render_telegram import show
from tests.fakes.telegram_server import FakeTelegram

LOST_TEXT = [
    'Use <div class="x"> and </div>',
    "List<String>",
    "a<b and c>d",
    "Tell <!channel> now",
]


def _shown(markdown: str, *, plain: bool = False) -> tuple[str, tuple[str, ...]]:
    rendered = render(markdown)
    entities = rendered.plain_entities if plain else rendered.entities  # plain: the fallback
    display = show(rendered.text, list(entities))
    return display.text, display.mentions


@pytest.mark.parametrize("text", LOST_TEXT)
def test_html_like_text_is_shown_as_written_in_the_final_text(text: str) -> None:
    assert _shown(finish_text(text)) == (text, ())


@pytest.mark.parametrize("text", LOST_TEXT)
def test_html_like_text_is_shown_as_written_mid_stream(text: str) -> None:
    preview = GrowingPreview(MAX_MESSAGE_LENGTH, rendered_length).preview(text + " and **mo")
    assert _shown(preview) == (text + " and mo", ())


def test_entity_references_and_spoiler_bars_stay_literal() -> None:
    text = "x &amp; y &lt; z || w || v"
    assert _shown(text) == (text, ())


def test_dollar_signs_stay_and_nothing_becomes_math() -> None:
    text = "costs $a and b$ or $$x$$ and `$y$`"
    assert _shown(text) == ("costs $a and b$ or $$x$$ and $y$", ())
    assert [e["type"] for e in render(text).entities] == ["code"]  # only the code span


def test_a_code_span_across_lines_keeps_a_line_that_looks_like_an_html_block() -> None:
    # unescaped, "<div>" at a line start ends the paragraph and the text after it was dropped
    assert _shown("see `a\n<div>b` end")[0] == "see a \\<div>b end"


@pytest.mark.parametrize(
    ("growing", "shown"),
    [("say \\*not", "say *not"), ("say \\~~no", "say ~~no"), ("a \\**b", "a *b")],
)
def test_a_preview_does_not_close_an_escaped_marker(growing: str, shown: str) -> None:
    # the preview closed `\*not` as if it were emphasis: "*not*" showed a `*` never written
    preview = GrowingPreview(MAX_MESSAGE_LENGTH, rendered_length).preview(growing)
    assert _shown(preview) == (shown, ())


def test_html_inside_code_stays_code() -> None:
    rendered = render("`<b>` and\n\n```html\n<div>&amp;</div>\n```")
    assert rendered.text == "<b> and\n\n<div>&amp;</div>"
    assert [e["type"] for e in rendered.entities] == ["code", "pre"]


@pytest.mark.parametrize(
    "url",
    ["tg://user?id=42", "TG:user?id=42", "tg://user/?foo=1&id=42", "tg://openmessage?user_id=42"],
)
def test_a_link_to_a_telegram_user_is_plain_text(url: str) -> None:
    final = f"Ask [Ann]({url}) today"
    preview = GrowingPreview(MAX_MESSAGE_LENGTH, rendered_length).preview(final + " or **to")
    assert _shown(final) == ("Ask Ann today", ())
    assert not [e for e in render(final).entities if e["type"] == "text_link"]
    assert _shown(preview) == ("Ask Ann today or to", ())


def test_a_web_link_stays_a_link() -> None:
    rendered = render("see [docs](https://ex.com/d?a=1&b=2)")
    assert rendered.entities == (
        {"type": "text_link", "offset": 4, "length": 4, "url": "https://ex.com/d?a=1&b=2"},
    )


def test_usernames_do_not_mention_in_formatted_or_plain_text() -> None:
    text = "ask @alice, **@bob_sm**ith or `@carol`; mail a@b.com"
    assert _shown(text) == ("ask @alice, @bob_smith or @carol; mail a@b.com", ())
    assert _shown(text, plain=True)[1] == ()
    assert show("ask @alice", []).mentions == ("@alice",)  # what the guard prevents


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(model_texts())
def test_every_stage_shows_the_model_text_without_markdown_and_mentions_nobody(
    text: str,
) -> None:
    for stage in stream_stages(text, MAX_MESSAGE_LENGTH, rendered_length):
        for plain in (False, True):
            shown, mentions = _shown(stage, plain=plain)
            assert without_markdown(shown) == without_markdown(stage), (stage, plain)
            assert mentions == (), (stage, plain)


@pytest.fixture
async def bot(fake_tg: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(fake_tg.token, base_url=fake_tg.api_url, request=HTTPXRequest()) as bot:
        yield bot


async def test_the_sink_delivers_html_like_text_and_no_mention(
    fake_tg: FakeTelegram, bot: Bot
) -> None:
    group = fake_tg.group(-1009, "G")
    sink = TelegramSink(bot, Target(group, private=False), fake_tg.bot_id)
    growing = "Use <div> in List<String>, ask [Ann](tg://user?id=42) or @alice **no"
    key = await sink.post(visible_preview(growing))
    [message] = fake_tg.bot_messages(group)
    seen = show(message.text, message.entities)
    assert seen.text == "Use <div> in List<String>, ask Ann or @alice no" and seen.mentions == ()
    await sink.finalize(key, "Use <div> in List<String>, ask [Ann](tg://user?id=42) or @alice.")
    [message] = fake_tg.bot_messages(group)
    seen = show(message.text, message.entities)
    assert seen.text == "Use <div> in List<String>, ask Ann or @alice." and seen.mentions == ()


async def test_the_plain_text_fallback_keeps_the_text_and_mentions_nobody(
    fake_tg: FakeTelegram, bot: Bot
) -> None:
    fake_tg.unsupported_entity_types = frozenset({"bold"})
    group = fake_tg.group(-1010, "G")
    sink = TelegramSink(bot, Target(group, private=False), fake_tg.bot_id)
    await sink.post("**Hi** @alice, a<b & <!here>")
    [message] = fake_tg.bot_messages(group)
    assert message.text == "Hi @alice, a<b & <!here>" and message.mentions == ()
    assert [e["type"] for e in message.entities] == ["code"]
