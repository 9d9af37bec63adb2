"""The incremental SSE parser: spec examples; random byte splits against a whole-stream parse."""

from __future__ import annotations

import random

import pytest

from core.llm.sse import EventStreamParser

BOM = "\ufeff"


def parse(*chunks: bytes) -> list[str]:
    parser = EventStreamParser()
    return [data for chunk in chunks for data in parser.feed(chunk)]


def reference(stream: bytes) -> list[str]:
    """The event-stream interpretation of the WHATWG spec, on the whole stream at once."""
    text = stream.decode("utf-8", "replace")
    text = text.removeprefix(BOM)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines.pop()  # the part after the last line ending is not a line (yet)
    events: list[str] = []
    buffer: str | None = None
    for line in lines:
        if line == "":
            if buffer is not None:
                events.append(buffer)
            buffer = None
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            buffer = value if buffer is None else f"{buffer}\n{value}"
    return events


def random_splits(stream: bytes, rng: random.Random) -> list[bytes]:
    if len(stream) < 2:
        return [stream]
    cuts = sorted(rng.sample(range(1, len(stream)), k=min(len(stream) - 1, rng.randint(0, 40))))
    return [stream[start:end] for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True)]


def random_stream(rng: random.Random) -> bytes:
    """Events with every kind of line, line ending and character the parser must handle."""
    words = ["héllo", "wörld", "😀", "日本語", '{"a": 1}', "x:y", " lead", "tab\t", "", "[DONE]"]
    parts: list[str] = []
    if rng.random() < 0.2:
        parts.append(BOM)
    for _ in range(rng.randint(0, 8)):
        lines: list[str] = []
        for _ in range(rng.randint(0, 4)):
            kind = rng.random()
            value = " ".join(rng.choice(words) for _ in range(rng.randint(0, 3)))
            if kind < 0.45:
                lines.append(f"data: {value}")
            elif kind < 0.6:
                lines.append(f"data:{value}")
            elif kind < 0.65:
                lines.append("data")
            elif kind < 0.75:
                lines.append(f": {value}")
            elif kind < 0.85:
                lines.append(f"{rng.choice(['event', 'id', 'retry', 'other'])}: {value}")
            else:
                lines.append(f"dat{rng.choice(['', 'a ', 'ax'])}: {value}")
        lines.extend([""] * rng.randint(0, 2))
        ending = rng.choice(["\n", "\r\n", "\r"])
        parts.append("".join(line + (ending if rng.random() < 0.8 else "\n") for line in lines))
    if rng.random() < 0.3:
        parts.append("data: unfinished")  # no blank line: never dispatched
    return "".join(parts).encode()


def test_one_event_per_blank_line() -> None:
    assert parse(b'data: {"a": 1}\n\ndata: two\n\n') == ['{"a": 1}', "two"]


def test_the_space_after_the_colon_is_optional_and_only_one_is_removed() -> None:
    assert parse(b"data:tight\n\ndata:  two spaces\n\n") == ["tight", " two spaces"]


def test_several_data_lines_are_joined_with_newlines() -> None:
    assert parse(b'data: {\ndata:  "a": 1\ndata: }\n\n') == ['{\n "a": 1\n}']


def test_comments_and_other_fields_are_ignored() -> None:
    stream = b": keep-alive\n\nevent: delta\nid: 7\nretry: 10\nfoo: bar\ndata: x\n\n: bye\n\n"

    assert parse(stream) == ["x"]


def test_data_without_a_colon_and_empty_data_give_empty_lines() -> None:
    assert parse(b"data\n\ndata:\n\ndata\ndata: b\n\n") == ["", "", "\nb"]


def test_a_blank_line_without_data_dispatches_nothing() -> None:
    assert parse(b"\n\n\nevent: x\n\nid: 1\n\n") == []


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending(ending: bytes) -> None:
    stream = b"data: a" + ending + b"data: b" + ending + ending + b"data: c" + ending + ending

    assert parse(stream) == ["a\nb", "c"]
    assert parse(*[bytes([byte]) for byte in stream]) == ["a\nb", "c"]


def test_a_crlf_cut_between_cr_and_lf_is_one_line_ending() -> None:
    assert parse(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n") == ["a\nb"]


def test_an_event_is_dispatched_as_soon_as_its_blank_line_arrives() -> None:
    parser = EventStreamParser()

    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\r") == ["a"]  # CR alone ends the line; no need to wait for an LF
    assert parser.feed(b"\n") == []  # LF after CR belongs to it: not another blank line


def test_characters_cut_between_chunks_are_reassembled() -> None:
    stream = "data: 😀 日本語 é\n\n".encode()

    for cut in range(1, len(stream)):
        assert parse(stream[:cut], stream[cut:]) == ["😀 日本語 é"], cut


def test_invalid_utf8_is_replaced() -> None:
    assert parse(b"data: a\xff\xe6\x97\n\n") == ["a\ufffd\ufffd"]


def test_a_leading_byte_order_mark_is_skipped_even_when_cut() -> None:
    stream = BOM.encode() + b"data: x\n\n"

    assert parse(stream) == ["x"]
    assert parse(stream[:1], stream[1:2], stream[2:]) == ["x"]
    assert parse(b"\xef", b"\xbb\xbfdata: y\n\n") == ["y"]
    assert parse(b"data: " + BOM.encode() + b"z\n\n") == [BOM + "z"]  # only at the start


def test_an_event_without_its_blank_line_at_the_end_is_not_dispatched() -> None:
    assert parse(b"data: a\n\ndata: b\n") == ["a"]
    assert parse(b"data: a\n\ndata: [DONE]") == ["a"]


def test_empty_chunks_change_nothing() -> None:
    assert parse(b"", b"data: a\r", b"", b"\n", b"", b"\n") == ["a"]


def test_the_reference_agrees_with_the_examples() -> None:
    stream = b"data: a\r\ndata:b\r\rdata\n: c\nevent: e\n\ndata: unfinished"

    assert reference(stream) == parse(stream) == ["a\nb", ""]


def test_random_streams_cut_anywhere_give_the_whole_streams_events() -> None:
    for seed in range(300):
        rng = random.Random(seed)
        stream = random_stream(rng)
        expected = reference(stream)

        assert parse(stream) == expected, seed
        for _ in range(5):
            assert parse(*random_splits(stream, rng)) == expected, seed
        assert parse(*[bytes([byte]) for byte in stream]) == expected, seed
