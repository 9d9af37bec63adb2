"""Chat Completions client: request validation, SSE streaming, error mapping."""

from core.llm.chunks import Completion
from core.llm.client import ChatCompletionsClient
from core.llm.names import pseudonymize_user, sanitize_name
from core.llm.params import ChatParams
from core.llm.request import ChatRequest
from core.llm.types import (
    AuthStyle,
    ChatMessage,
    ChoiceFinished,
    ContentDelta,
    FinishReason,
    LLMEndpoint,
    MessageRole,
    StreamEvent,
    UsageReport,
)

__all__ = [
    "AuthStyle",
    "ChatCompletionsClient",
    "ChatMessage",
    "ChatParams",
    "ChatRequest",
    "ChoiceFinished",
    "Completion",
    "ContentDelta",
    "FinishReason",
    "LLMEndpoint",
    "MessageRole",
    "StreamEvent",
    "UsageReport",
    "pseudonymize_user",
    "sanitize_name",
]
