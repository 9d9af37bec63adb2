"""threadline core: the platform-free conversation engine."""

from core.conversation import Attachment, ConversationKey, Inbound, Role, Turn, TurnStatus
from core.errors import (
    ConfigError,
    LLMError,
    LLMRateLimited,
    LLMRejected,
    LLMStreamError,
    LLMTimeout,
    LLMUnavailable,
    SinkError,
    SinkGone,
    SinkRateLimited,
    SinkRejected,
    StoreError,
    ThreadlineError,
)

__all__ = [
    "Attachment",
    "ConfigError",
    "ConversationKey",
    "Inbound",
    "LLMError",
    "LLMRateLimited",
    "LLMRejected",
    "LLMStreamError",
    "LLMTimeout",
    "LLMUnavailable",
    "Role",
    "SinkError",
    "SinkGone",
    "SinkRateLimited",
    "SinkRejected",
    "StoreError",
    "ThreadlineError",
    "Turn",
    "TurnStatus",
]
