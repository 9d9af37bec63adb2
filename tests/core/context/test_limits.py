"""ContextLimits: what a length rejection teaches, and the window the one retry gets."""

from __future__ import annotations

import pytest

from core.context import Budget, ContextLimits, TokenCounter, Window
from core.errors import LLMContextTooLong
from core.llm import ChatMessage


class MemoryLimits:
    """A LimitStore in memory: the smallest limit wins, like the database's."""

    def __init__(self) -> None:
        self.limits: dict[str, int] = {}

    async def model_limit(self, model: str) -> int | None:
        return self.limits.get(model)

    async def lower_model_limit(self, model: str, tokens: int) -> int:
        self.limits[model] = min(tokens, self.limits.get(model, tokens))
        return self.limits[model]


def window(messages: int, prompt_tokens: int) -> Window:
    return Window(
        messages=[ChatMessage(role="user", content=str(i)) for i in range(messages)],
        dropped=0,
        prompt_tokens=prompt_tokens,
    )


class Rebuilder:
    """Records the budget the retry asks for and answers with a window of its choosing."""

    def __init__(self, result: Window) -> None:
        self.result = result
        self.budgets: list[Budget] = []

    def __call__(self, budget: Budget) -> Window:
        self.budgets.append(budget)
        return self.result


@pytest.fixture
def store() -> MemoryLimits:
    return MemoryLimits()


def limits(store: MemoryLimits, context_window: int = 128_000) -> ContextLimits:
    return ContextLimits(store, context_window=context_window, counter=TokenCounter())


async def test_a_stated_limit_is_stored_and_used_from_then_on(store: MemoryLimits) -> None:
    context = limits(store)
    budget = await context.budget("m", 4096, reply_fixed=False)
    assert budget == Budget(128_000, 4096)
    error = LLMContextTooLong(400, "too long", limit=2048, prompt_tokens=3000)
    rebuild = Rebuilder(window(3, 1000))
    retry = await context.retry_window("m", error, window(9, 3000), budget, rebuild)
    assert retry == rebuild.result
    assert rebuild.budgets == [Budget(2048, 512)]
    assert store.limits == {"m": 2048}
    assert await context.budget("m", 4096, reply_fixed=False) == Budget(2048, 512)
    assert await limits(store).limit("m") == 2048  # a new process reads it from the store


async def test_when_the_server_counts_more_the_retry_budget_is_scaled(store: MemoryLimits) -> None:
    # We counted 2,000 tokens where the server counted 3,000: its 2,048 are 1,365 of ours.
    error = LLMContextTooLong(400, "too long", limit=2048, prompt_tokens=3000)
    rebuild = Rebuilder(window(3, 500))
    budget = Budget(128_000, 4096)
    await limits(store).retry_window("m", error, window(9, 2000), budget, rebuild)
    assert rebuild.budgets == [Budget(1365, 341)]
    assert store.limits == {"m": 2048}  # stored in the server's tokens


async def test_without_a_stated_limit_the_window_shrinks_to_three_quarters(
    store: MemoryLimits,
) -> None:
    error = LLMContextTooLong(400, "Please reduce the length of the messages or completion.")
    rebuild = Rebuilder(window(3, 500))
    await limits(store).retry_window("m", error, window(9, 4000), Budget(128_000, 4096), rebuild)
    assert store.limits == {"m": 3000}
    assert rebuild.budgets == [Budget(3000, 750)]


async def test_a_limit_that_would_not_shrink_the_window_shrinks_it_anyway(
    store: MemoryLimits,
) -> None:
    # The server states the size we already used: our count of the prompt must have been low.
    error = LLMContextTooLong(400, "too long", limit=8000)
    rebuild = Rebuilder(window(3, 500))
    await limits(store).retry_window("m", error, window(9, 4000), Budget(8000, 1000), rebuild)
    assert rebuild.budgets == [Budget(3000 + 1000, 1000)]


async def test_a_fixed_reply_limit_is_kept_whole(store: MemoryLimits) -> None:
    error = LLMContextTooLong(400, "too long", limit=4096, prompt_tokens=4000)
    rebuild = Rebuilder(window(3, 500))
    budget = Budget(128_000, 1000, reply_fixed=True)
    await limits(store).retry_window("m", error, window(9, 4000), budget, rebuild)
    assert rebuild.budgets == [Budget(4096, 1000, reply_fixed=True)]


async def test_when_the_newest_message_alone_does_not_fit_there_is_no_retry(
    store: MemoryLimits,
) -> None:
    error = LLMContextTooLong(400, "too long", limit=2048, prompt_tokens=5000)
    # Only the system prompt and the message are left, and they are over the budget.
    rebuild = Rebuilder(window(2, 4900))
    shown = await limits(store).retry_window(
        "m", error, window(6, 5000), Budget(128_000, 4096), rebuild
    )
    assert isinstance(shown, LLMContextTooLong) and not shown.retryable
    assert shown.user_note.startswith(
        "your message is too long for the model's context window of 2048 tokens"
    )
    assert "try again" not in shown.user_note
    assert store.limits == {"m": 2048}


async def test_a_rebuilt_window_no_smaller_than_the_sent_one_is_not_retried(
    store: MemoryLimits,
) -> None:
    error = LLMContextTooLong(400, "the input length exceeds the context length")
    sent = window(2, 900)
    shown = await limits(store).retry_window(
        "m", error, sent, Budget(128_000, 4096), Rebuilder(window(2, 900))
    )
    assert isinstance(shown, LLMContextTooLong)
    assert "model's context window, even without" in shown.user_note


async def test_the_configured_window_caps_a_larger_learned_one(store: MemoryLimits) -> None:
    store.limits["m"] = 200_000
    assert await limits(store, context_window=8192).limit("m") == 8192
