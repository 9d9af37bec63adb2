"""What Slack users see is what the model wrote: nothing dropped, nobody notified.

Displayed text comes from `tests.fakes.render_slack`: mrkdwn `text` (chat.postMessage and
chat.update, the fallback path) with its `<…>` tokens, emphasis and the three escapes, and
`markdown_text` (native streams) read as CommonMark after the escapes. The property compares
it with the model text by `tests.fakes.model_text.without_markdown`, which removes Markdown
syntax (link syntax to the label, fence lines, line-start list and heading markers and the
bullets drawn for them, backslash escapes, `* _ ~` backquote and `||`, whitespace runs) from
both sides and nothing else. Every stage a stream shows is checked, then the final text.

Known gap (strict xfail below): in native streams an entity reference the model wrote
(`&amp;`, `&lt;`) shows decoded, so the native-stream property skips texts holding one. How
Slack's `markdown` block treats its escapes is not documented; see `render_slack`.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from adapters.slack.format import to_markdown_text, to_mrkdwn
from core.streaming.split import GrowingPreview, finish_text
from tests.fakes.model_text import model_texts, stream_stages, without_markdown
from tests.fakes.render_slack import show_markdown, show_mrkdwn

TEXT_LIMIT = 40_000
MARKDOWN_LIMIT = 12_000


def _mrkdwn_length(text: str) -> int:
    return len(to_mrkdwn(text))


def _markdown_length(text: str) -> int:
    return len(to_markdown_text(text))


@pytest.mark.parametrize(
    "text",
    ['Use <div class="x"> and </div>', "List<String>", "a<b and c>d", "Tell <!channel> now"],
)
def test_html_like_text_and_tokens_are_shown_as_written(text: str) -> None:
    for shown in (show_mrkdwn(to_mrkdwn(text)), show_markdown(to_markdown_text(text))):
        assert (shown.text, shown.mentions) == (text, ())


def test_the_renderer_notifies_for_tokens_that_are_not_escaped() -> None:
    shown = show_mrkdwn("hi <@U123|bob> <!here> &lt;!channel&gt; <https://x.com|docs>")
    assert shown == show_mrkdwn("hi <@U123|bob> <!here> &lt;!channel&gt; <https://x.com|docs>")
    assert shown.text == "hi @bob @here <!channel> docs"
    assert shown.mentions == ("U123", "here")
    assert show_mrkdwn("@here and @channel", link_names=True).mentions == ("here", "channel")
    assert show_markdown("a <!everyone> b").mentions == ("<!everyone>",)


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(model_texts())
def test_every_mrkdwn_stage_shows_the_model_text_without_markdown_and_notifies_nobody(
    text: str,
) -> None:
    for stage in stream_stages(text, TEXT_LIMIT, _mrkdwn_length):
        shown = show_mrkdwn(to_mrkdwn(stage))
        assert without_markdown(shown.text) == without_markdown(stage), stage
        assert shown.mentions == (), stage


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("- **`a<b>`** here", "• **a<b>** here"),  # was a rule: "──────────a<b>** here"
        ("see `x` * not a bullet", "see x * not a bullet"),  # was "see x• not a bullet"
        ("# Title `code` end", "Title code end"),  # the space after the title was lost
    ],
)
def test_code_on_a_line_does_not_turn_its_prose_into_a_rule_bullet_or_glued_heading(
    text: str, shown: str
) -> None:
    preview = GrowingPreview(TEXT_LIMIT, _mrkdwn_length).preview(text + " and **mo")
    assert show_mrkdwn(to_mrkdwn(finish_text(text))).text == shown
    assert show_mrkdwn(to_mrkdwn(preview)).text == shown + " and mo"


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(model_texts())
def test_every_native_stream_stage_shows_the_model_text_without_markdown(text: str) -> None:
    for stage in stream_stages(text, MARKDOWN_LIMIT, _markdown_length):
        shown = show_markdown(to_markdown_text(stage))
        assert without_markdown(shown.text) == without_markdown(stage), stage
        assert shown.mentions == (), stage


def test_an_entity_reference_in_a_native_stream_is_shown_as_written() -> None:
    # was "x & y < z": Markdown decoded the references the model wrote, once Slack had
    # undone its own escapes
    assert show_markdown(to_markdown_text("x &amp; y &lt; z")).text == "x &amp; y &lt; z"
    assert show_markdown(to_markdown_text("`a &amp; b` &#60;")).text == "a &amp; b &#60;"
    assert to_markdown_text("A&B &") == "A&amp;B &amp;"  # no reference: no backslash


def test_a_backslash_escape_stays_literal_instead_of_becoming_italic() -> None:
    # was "\_not bold\_": the model's literal asterisks became italic markers
    assert to_mrkdwn("\\*not bold\\* and \\[x](https://e.com)") == (
        "\\*not bold\\* and \\[x](https://e.com)"
    )


@pytest.mark.parametrize(("text", "shown"), [("## Why C#", "Why C#"), ("# T ##", "T")])
def test_a_heading_loses_only_a_closing_sequence_after_a_space(text: str, shown: str) -> None:
    # "## Why C#" showed "Why C": a "#" without a space before it is text, not a closer
    preview = GrowingPreview(TEXT_LIMIT, _mrkdwn_length).preview(text + "\n\nmo")
    assert show_mrkdwn(to_mrkdwn(text)).text == shown
    assert show_mrkdwn(to_mrkdwn(preview)).text == shown + "\n\nmo"


def test_a_link_label_keeps_its_underscores() -> None:
    # "[my_file.py](…)" showed "my file.py": underscores in labels were turned into spaces
    wire = to_mrkdwn("see [my_file.py](https://e.com/f) and [**docs**](https://e.com/d)")
    assert wire == "see <https://e.com/f|my_file.py> and <https://e.com/d|docs>"
    assert show_mrkdwn(wire).text == "see my_file.py and docs"
