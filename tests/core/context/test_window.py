"""Window selection: system prompt and current turn always, newest history that fits, names."""

from __future__ import annotations

import pytest

from core.context import TokenCounter, Window, build_window
from core.conversation import Role, Turn, TurnStatus
from core.llm.types import ChatMessage

MODEL = "gpt-4o"
SYSTEM = "You are a helpful assistant."


@pytest.fixture
def counter() -> TokenCounter:
    return TokenCounter()


def user(text: str, name: str | None = "Ann", turn_id: int | None = None) -> Turn:
    return Turn(Role.USER, text, author_id="U1", author_name=name, id=turn_id)


def bot(text: str, status: TurnStatus = TurnStatus.COMPLETE) -> Turn:
    return Turn(Role.ASSISTANT, text, status=status)


def history(n: int) -> list[Turn]:
    """Alternating user/assistant turns t0..t{n-1}, each about 10 tokens."""
    return [
        (user if i % 2 == 0 else bot)(f"turn {i}: some words to take up a little room")
        for i in range(n)
    ]


def build(counter: TokenCounter, turns: list[Turn], current: Turn, **kwargs: object) -> Window:
    options: dict[str, object] = {"context_tokens": 10_000, "reply_tokens": 1_000}
    options.update(kwargs)
    return build_window(SYSTEM, turns, current, counter=counter, model=MODEL, **options)  # type: ignore[arg-type]


def contents(window: Window) -> list[str]:
    return [m.content for m in window.messages]


def test_everything_fits(counter: TokenCounter) -> None:
    turns = history(6)
    window = build(counter, turns, user("now"))
    assert contents(window) == [SYSTEM, *(t.content for t in turns), "now"]
    assert [m.role for m in window.messages] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert window.dropped == 0
    assert window.prompt_tokens == counter.count_messages(window.messages, MODEL)


def test_oldest_turns_are_dropped_first_and_counted(counter: TokenCounter) -> None:
    turns = history(40)
    window = build(counter, turns, user("now"), context_tokens=400, reply_tokens=100)
    kept = contents(window)[1:-1]
    assert kept == [t.content for t in turns[-len(kept) :]]  # a contiguous newest stretch
    assert 0 < len(kept) < 40
    assert window.dropped == 40 - len(kept)
    assert window.prompt_tokens <= 300
    assert window.prompt_tokens == counter.count_messages(window.messages, MODEL)
    # The next older turn did not fit, or it was an assistant turn whose question did not.
    older = turns[-len(kept) - 2 : -len(kept)]
    cost = sum(counter.count_message(ChatMessage("user", t.content), MODEL) for t in older)
    assert window.prompt_tokens + cost > 300


def test_window_opens_with_a_user_turn_when_older_turns_were_dropped(
    counter: TokenCounter,
) -> None:
    turns = history(40)
    for budget in range(150, 400, 7):
        window = build(counter, turns, user("now"), context_tokens=budget, reply_tokens=0)
        if window.dropped and len(window.messages) > 2:
            assert window.messages[1].role == "user", budget
        assert window.dropped + len(window.messages) - 2 == 40


def test_a_conversation_may_open_with_the_assistant_when_nothing_was_dropped(
    counter: TokenCounter,
) -> None:
    window = build(counter, [bot("Welcome! Ask me anything.")], user("hi"))
    assert contents(window) == [SYSTEM, "Welcome! Ask me anything.", "hi"]


def test_system_prompt_and_current_are_never_dropped(counter: TokenCounter) -> None:
    huge = "word " * 5_000
    window = build(counter, history(10), user(huge), context_tokens=1_000, reply_tokens=500)
    assert contents(window) == [SYSTEM, huge]
    assert window.dropped == 10
    assert window.prompt_tokens > 500  # over budget, and says so
    long_system = build_window(
        huge,
        history(4),
        user("now"),
        context_tokens=100,
        reply_tokens=50,
        counter=counter,
        model=MODEL,
    )
    assert contents(long_system) == [huge, "now"]
    assert long_system.dropped == 4


def test_reply_tokens_are_reserved(counter: TokenCounter) -> None:
    turns = history(20)
    roomy = build(counter, turns, user("now"), context_tokens=600, reply_tokens=0)
    tight = build(counter, turns, user("now"), context_tokens=600, reply_tokens=300)
    assert tight.dropped > roomy.dropped
    assert tight.prompt_tokens <= 300


def test_failed_empty_turns_are_skipped_and_partial_ones_kept(counter: TokenCounter) -> None:
    turns = [
        user("question one"),
        bot("", status=TurnStatus.FAILED),
        user("question two"),
        bot("half an ans", status=TurnStatus.PARTIAL),
        bot("it broke after this", status=TurnStatus.FAILED),
    ]
    window = build(counter, turns, user("now"))
    assert contents(window) == [
        SYSTEM,
        "question one",
        "question two",
        "half an ans",
        "it broke after this",
        "now",
    ]
    assert window.dropped == 0


def test_names_only_where_name_for_gives_one(counter: TokenCounter) -> None:
    turns = [user("hi", name="Ann"), bot("hello"), user("yo", name=None)]
    window = build(
        counter,
        turns,
        user("now", name="Bob"),
        name_for=lambda turn: turn.author_name,
    )
    assert [m.name for m in window.messages] == [None, "Ann", None, None, "Bob"]
    unnamed = build(counter, turns, user("now", name="Bob"))
    assert all(m.name is None for m in unnamed.messages)


def test_names_are_never_put_on_assistant_turns(counter: TokenCounter) -> None:
    window = build(counter, [bot("hello")], user("now"), name_for=lambda _turn: "someone")
    assert [m.name for m in window.messages] == [None, None, "someone"]


def test_names_count_towards_the_budget(counter: TokenCounter) -> None:
    turns = history(6)
    plain = build(counter, turns, user("now"))
    named = build(counter, turns, user("now"), name_for=lambda _turn: "Ann")
    assert named.prompt_tokens == plain.prompt_tokens + 4 * 2  # 4 user turns, 1 + 1 each


def test_empty_system_prompt_is_left_out(counter: TokenCounter) -> None:
    window = build_window(
        "",
        [user("a")],
        user("b"),
        context_tokens=1000,
        reply_tokens=10,
        counter=counter,
        model=MODEL,
    )
    assert contents(window) == ["a", "b"]


def test_current_turn_is_not_repeated_from_history(counter: TokenCounter) -> None:
    current = user("now", turn_id=7)
    window = build(counter, [user("before", turn_id=6), current], current)
    assert contents(window) == [SYSTEM, "before", "now"]


def test_estimated_models_work_the_same_way(counter: TokenCounter) -> None:
    turns = history(40)
    window = build_window(
        SYSTEM,
        turns,
        user("now"),
        context_tokens=400,
        reply_tokens=100,
        counter=counter,
        model="llama3",
    )
    assert 0 < window.dropped < 40
    assert window.prompt_tokens <= 300
    assert window.prompt_tokens == counter.count_messages(window.messages, "llama3")


def test_bad_budgets_are_refused(counter: TokenCounter) -> None:
    with pytest.raises(ValueError, match="context_tokens"):
        build(counter, [], user("x"), context_tokens=0)
    with pytest.raises(ValueError, match="reply_tokens"):
        build(counter, [], user("x"), reply_tokens=-1)


def test_a_stored_token_count_is_used_instead_of_counting(counter: TokenCounter) -> None:
    text = "turn text that is really about ten tokens long, more or less"
    counted = Turn(Role.USER, text, author_name="Ann")
    stored = Turn(Role.USER, text, author_name="Ann", token_count=500)
    plain = build(counter, [counted], user("now"))
    with_stored = build(counter, [stored], user("now"))
    content = counter.count(text, MODEL)
    assert with_stored.prompt_tokens == plain.prompt_tokens - content + 500
    # Framing, role and name are still counted on top of the stored content tokens.
    named = build(counter, [stored], user("now"), name_for=lambda turn: turn.author_name)
    assert named.prompt_tokens == with_stored.prompt_tokens + 2 * (1 + 1)
    # A stored count decides what fits, like a counted one.
    tight = build(counter, [stored], user("now"), context_tokens=400, reply_tokens=0)
    assert contents(tight) == [SYSTEM, "now"] and tight.dropped == 1
    # The current turn's stored count is used too; 0 is not plausible and is recounted.
    current = build(counter, [], Turn(Role.USER, "now", token_count=40))
    assert current.prompt_tokens == build(counter, [], user("now")).prompt_tokens - 1 + 40
    zero = build(counter, [Turn(Role.USER, text, token_count=0)], user("now"))
    assert zero.prompt_tokens == build(counter, [Turn(Role.USER, text)], user("now")).prompt_tokens


def test_stored_counts_work_for_estimated_models(counter: TokenCounter) -> None:
    turns = [Turn(Role.USER, "short", token_count=300) for _ in range(3)]
    window = build_window(
        SYSTEM,
        turns,
        user("now"),
        context_tokens=700,
        reply_tokens=0,
        counter=counter,
        model="llama3",
    )
    assert window.dropped == 1  # two stored 300-token turns fit in 700, three do not
    framing = counter.count_message(ChatMessage("user", ""), "llama3")
    assert window.prompt_tokens == (
        counter.count_messages([window.messages[0], window.messages[-1]], "llama3")
        + 2 * (300 + framing)
    )
