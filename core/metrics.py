"""The process's Prometheus metrics: answers, the model, platform calls, pacing, the store."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)
"""Every threadline metric; `/metrics` serves this registry."""

_LATENCY = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_DB = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

ANSWERS_ACTIVE = Gauge(
    "threadline_answers_active",
    "Answers streaming right now.",
    ["platform"],
    registry=REGISTRY,
)
ANSWERS_STARTED = Counter(
    "threadline_answers_started",
    "Answers started (the model was asked).",
    ["platform"],
    registry=REGISTRY,
)
ANSWERS_FINISHED = Counter(
    "threadline_answers_finished",
    "Answers finished, by how they ended (complete, partial, failed, stopped).",
    ["platform", "outcome"],
    registry=REGISTRY,
)
STREAMED_TOKENS = Counter(
    "threadline_streamed_tokens",
    "Completion tokens streamed to users (as the server reported them, else estimated).",
    ["platform"],
    registry=REGISTRY,
)
LLM_FIRST_TOKEN = Histogram(
    "threadline_llm_first_token_seconds",
    "Time from sending a Chat Completions request to its first content delta.",
    buckets=_LATENCY,
    registry=REGISTRY,
)
LLM_DURATION = Histogram(
    "threadline_llm_duration_seconds",
    "Time from sending a Chat Completions request to the end of its stream.",
    buckets=_LATENCY,
    registry=REGISTRY,
)
PLATFORM_CALLS = Counter(
    "threadline_platform_api_calls",
    "Platform API calls, by platform, method and result (ok, rate_limited, error, no_response).",
    ["platform", "method", "result"],
    registry=REGISTRY,
)
PLATFORM_RATE_LIMITED = Counter(
    "threadline_platform_rate_limited",
    "Platform API calls answered 429 (rate limited), by platform and method.",
    ["platform", "method"],
    registry=REGISTRY,
)
PACER_WAIT = Histogram(
    "threadline_pacer_wait_seconds",
    "Time a platform write waited for its pacing budget.",
    ["platform"],
    buckets=(0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "threadline_queued_messages",
    "Messages accepted and not yet answered (waiting for their turn or their answer).",
    registry=REGISTRY,
)
DB_SECONDS = Histogram(
    "threadline_db_seconds",
    "Time of one store transaction, by what it did.",
    ["action"],
    buckets=_DB,
    registry=REGISTRY,
)


def platform_call(platform: str, method: str, result: str) -> None:
    """Count one platform API call; a `rate_limited` result also counts as a 429."""
    PLATFORM_CALLS.labels(platform, method, result).inc()
    if result == "rate_limited":
        PLATFORM_RATE_LIMITED.labels(platform, method).inc()
