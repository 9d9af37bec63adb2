"""Chunk interpretation without the network: think-tag filter, stream decoder, whole answers."""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

import pytest

from core.errors import LLMRateLimited, LLMStreamError
from core.llm.chunks import StreamDecoder, ThinkFilter, decode_completion
from core.llm.types import ChoiceFinished, ContentDelta, UsageReport


def keep(text: str) -> str:
    return text


def through_filter(pieces: list[str]) -> str:
    think = ThinkFilter()
    return "".join(think.feed(piece) for piece in pieces) + think.flush()


@pytest.mark.parametrize(
    ("text", "visible"),
    [
        ("<think>plan it</think>\n\nAnswer.", "Answer."),
        ("\n  <think>a</think>Answer </think> stays", "Answer </think> stays"),
        ("No tags here.", "No tags here."),
        ("<thinking> is not the tag", "<thinking> is not the tag"),
        ("Later <think>x</think> stays", "Later <think>x</think> stays"),
        ("<think>never closed", ""),
        ("<thi", "<thi"),
        ("  ", "  "),
        ("<think></think>", ""),
    ],
)
def test_think_filter_gives_the_same_text_for_every_way_of_cutting_it(
    text: str, visible: str
) -> None:
    assert through_filter([text]) == visible
    for first, second in itertools.combinations(range(len(text) + 1), 2):
        pieces = [text[:first], text[first:second], text[second:]]
        assert through_filter(pieces) == visible, pieces


def test_think_filter_passes_text_through_without_delay_once_visible() -> None:
    think = ThinkFilter()

    assert think.feed("Hello") == "Hello"
    assert think.feed(" <think>") == " <think>"


def test_think_filter_holds_back_only_a_possible_tag_prefix() -> None:
    think = ThinkFilter()

    assert think.feed("<th") == ""
    assert think.feed("e end") == "<the end"


def chunk(**fields: Any) -> str:
    return json.dumps({"id": "c", "object": "chat.completion.chunk", **fields})


def test_decoder_reports_content_finish_and_usage_once() -> None:
    decoder = StreamDecoder(keep)

    events = [
        *decoder.feed(chunk(choices=[], prompt_filter_results=[])),
        *decoder.feed(chunk(choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}}])),
        *decoder.feed(
            chunk(choices=[{"index": 0, "delta": {"content": None, "reasoning_content": "hm"}}])
        ),
        *decoder.feed(chunk(choices=[{"index": 0, "delta": {"content": "Hi"}}])),
        *decoder.feed(chunk(choices=[{"index": 0, "finish_reason": None}])),  # no delta
        *decoder.feed(
            chunk(
                choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}],
                x_groq={"usage": {"prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18}},
            )
        ),
        *decoder.feed(
            chunk(choices=[], usage={"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4})
        ),
        *decoder.finish(),
    ]

    assert events == [
        ContentDelta(0, "Hi"),
        ChoiceFinished(0, "stop"),
        UsageReport(3, 1, 4),
    ]
    assert decoder.unfinished_choices == []


def test_decoder_falls_back_to_groq_usage() -> None:
    decoder = StreamDecoder(keep)
    decoder.feed(
        chunk(
            choices=[{"index": 0, "delta": {"content": "x"}, "finish_reason": "stop"}],
            x_groq={"usage": {"prompt_tokens": 2, "completion_tokens": 1}},
        )
    )

    assert decoder.finish() == [UsageReport(2, 1, 3)]


def test_decoder_tracks_unfinished_choices_and_flushes_their_held_text() -> None:
    decoder = StreamDecoder(keep)
    decoder.feed(
        chunk(choices=[{"index": 0, "delta": {"content": "done"}, "finish_reason": "stop"}])
    )
    held = decoder.feed(chunk(choices=[{"index": 1, "delta": {"content": "<th"}}]))

    assert held == []
    assert decoder.unfinished_choices == [1]
    assert decoder.finish() == [ContentDelta(1, "<th")]


def test_decoder_ignores_a_repeated_finish_reason() -> None:
    decoder = StreamDecoder(keep)
    first = decoder.feed(chunk(choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    again = decoder.feed(chunk(choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]))

    assert first == [ChoiceFinished(0, "stop")]
    assert again == []


def test_decoder_uses_the_position_when_a_choice_has_no_index() -> None:
    decoder = StreamDecoder(keep)

    events = decoder.feed(chunk(choices=[{"delta": {"content": "a"}}, {"delta": {"content": "b"}}]))

    assert events == [ContentDelta(0, "a"), ContentDelta(1, "b")]


@pytest.mark.parametrize(
    ("payload", "error_type"),
    [
        ({"error": {"message": "boom", "type": "server_error"}}, LLMStreamError),
        ({"error": "plain string error"}, LLMStreamError),
        ({"object": "error", "message": "vllm died", "code": 500}, LLMStreamError),
        ({"error": {"message": "x", "code": 429}}, LLMRateLimited),
        ({"error": {"message": "x", "type": "rate_limit_exceeded"}}, LLMRateLimited),
        ({"object": "error", "message": "Too Many Requests", "code": 400}, LLMRateLimited),
    ],
)
def test_decoder_raises_error_payloads(
    payload: dict[str, Any], error_type: type[Exception]
) -> None:
    decoder = StreamDecoder(keep)

    with pytest.raises(error_type):
        decoder.feed(json.dumps(payload))


def test_error_messages_go_through_the_redactor() -> None:
    decoder = StreamDecoder(lambda text: text.replace("SECRET", "<redacted>"))

    with pytest.raises(LLMStreamError) as caught:
        decoder.feed(json.dumps({"error": {"message": "bad key SECRET"}}))

    assert "SECRET" not in str(caught.value)
    assert "<redacted>" in str(caught.value)


@pytest.mark.parametrize("data", ["not json", "[1, 2]", '"text"'])
def test_decoder_rejects_malformed_chunks(data: str) -> None:
    with pytest.raises(LLMStreamError):
        StreamDecoder(keep).feed(data)


def test_null_error_field_is_not_an_error() -> None:
    events = StreamDecoder(keep).feed(
        chunk(error=None, choices=[{"index": 0, "delta": {"content": "ok"}}])
    )

    assert events == [ContentDelta(0, "ok")]


def test_decode_completion() -> None:
    body = {
        "object": "chat.completion",
        "model": "m-1",
        "choices": [
            {"index": 1, "message": {"content": "second"}, "finish_reason": "length"},
            {"index": 0, "message": {"content": "<think>x</think>first"}, "finish_reason": "stop"},
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }

    completion = decode_completion(json.dumps(body).encode(), keep)

    assert completion.texts == ("first", "second")
    assert completion.finish_reasons == ("stop", "length")
    assert completion.usage == UsageReport(5, 2, 7)
    assert completion.model == "m-1"
    assert completion.text == "first"


@pytest.mark.parametrize("body", [b"<html>", b"{}", b'{"choices": []}', b"[]"])
def test_decode_completion_rejects_bodies_without_an_answer(body: bytes) -> None:
    with pytest.raises(LLMStreamError):
        decode_completion(body, keep)


def random_choice(rng: random.Random) -> Any:
    """One streamed choice in any of the shapes servers send, well-formed or not."""
    if rng.random() < 0.03:
        return rng.choice([None, "text", 3, []])
    choice: dict[str, Any] = {}
    index = rng.random()
    if index < 0.8:
        choice["index"] = 0
    elif index < 0.9:
        choice["index"] = rng.choice([True, 1.0, "0", None])
    delta: Any = {}
    content = rng.random()
    if content < 0.6:
        delta["content"] = rng.choice(["Hi", " there", "", "<th", "ink>", "</think>", "\n", " x "])
    elif content < 0.7:
        delta["content"] = rng.choice([None, 5, ["a"]])
    if rng.random() < 0.1:
        delta["refusal"] = rng.choice(["no", "", None])
    if rng.random() < 0.1:
        delta["role"] = "assistant"
    if rng.random() < 0.05:
        delta = rng.choice([None, "delta", []])
    if rng.random() < 0.9:
        choice["delta"] = delta
    if rng.random() < 0.15:
        choice["finish_reason"] = rng.choice(["stop", "length", "", None])
    elif rng.random() < 0.5:
        choice["finish_reason"] = None
    return choice


def test_one_choice_chunks_decode_like_the_general_path() -> None:
    """A lone choice takes a fast path; a second, ignored choice forces the general one."""
    for seed in range(400):
        rng = random.Random(seed)
        fast, general = StreamDecoder(keep), StreamDecoder(keep)
        fast_events, general_events = [], []
        for _ in range(rng.randint(1, 12)):
            choice = random_choice(rng)
            fast_events.extend(fast.feed(chunk(choices=[choice], usage=None)))
            general_events.extend(general.feed(chunk(choices=[choice, None], usage=None)))
        assert fast_events == general_events, seed
        assert fast.unfinished_choices == general.unfinished_choices, seed
        assert fast.saw_choice == general.saw_choice, seed
        assert fast.finish() == general.finish(), seed


def test_content_after_a_think_block_takes_the_fast_path_unchanged() -> None:
    decoder = StreamDecoder(keep)
    pieces = ["<think>", "plan", "</think>", "\n\n", "Hello", " <think>", " world"]

    events = [
        event
        for piece in pieces
        for event in decoder.feed(chunk(choices=[{"index": 0, "delta": {"content": piece}}]))
    ]

    assert events == [
        ContentDelta(0, "Hello"),
        ContentDelta(0, " <think>"),
        ContentDelta(0, " world"),
    ]
