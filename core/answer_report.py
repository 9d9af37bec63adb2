"""One record per answer: its metrics, and one log line with conversation, timings and tokens."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from core.conversation import ConversationKey
from core.metrics import (
    ANSWERS_ACTIVE,
    ANSWERS_FINISHED,
    ANSWERS_STARTED,
    LLM_DURATION,
    LLM_FIRST_TOKEN,
    STREAMED_TOKENS,
)
from core.outcome import Outcome

log = logging.getLogger("threadline.answers")


@dataclass(slots=True)
class AnswerTimes:
    """When an answer's model request went out, its first words came, and its stream ended."""

    started: float
    asked: float | None = None
    first_token: float | None = None
    ended: float | None = None


def answer_started(key: ConversationKey) -> None:
    ANSWERS_STARTED.labels(key.platform).inc()
    ANSWERS_ACTIVE.labels(key.platform).inc()


def answer_finished(
    key: ConversationKey,
    outcome: Outcome,
    times: AnswerTimes,
    *,
    completion_tokens: int,
    prompt_tokens: int | None,
    now: float,
) -> None:
    """Count the answer by how it ended and log its one line."""
    platform = key.platform
    ANSWERS_ACTIVE.labels(platform).dec()
    if outcome.stopped:
        ended = "stopped"
    elif outcome.status is not None:
        ended = outcome.status.value
    else:
        ended = "failed"
    ANSWERS_FINISHED.labels(platform, ended).inc()
    STREAMED_TOKENS.labels(platform).inc(completion_tokens)
    first = None
    if times.asked is not None and times.first_token is not None:
        first = times.first_token - times.asked
        LLM_FIRST_TOKEN.observe(first)
    if times.asked is not None and times.ended is not None:
        LLM_DURATION.observe(times.ended - times.asked)
    total = now - times.started
    log.info(
        "answer in %s: %s, %d completion tokens, first token %s, %.2f s in all",
        key,
        ended,
        completion_tokens,
        "none" if first is None else f"after {first:.2f} s",
        total,
        extra={
            "answer": {
                "conversation": str(key),
                "platform": platform,
                "outcome": ended,
                "error": outcome.error,
                "finish_reason": outcome.finish_reason,
                "completion_tokens": completion_tokens,
                "prompt_tokens": prompt_tokens,
                "first_token_seconds": None if first is None else round(first, 3),
                "seconds": round(total, 3),
                "messages": sum(len(r.message_ids) for r in outcome.results),
                "stored": outcome.stored,
            }
        },
    )
