"""Context window: token counting and choosing the history that fits."""

from core.context.limits import Budget, ContextLimits, LimitStore, Rebuild
from core.context.tokens import TokenCounter, estimate_text, load_encoding
from core.context.window import NameFor, Window, build_window

__all__ = [
    "Budget",
    "ContextLimits",
    "LimitStore",
    "NameFor",
    "Rebuild",
    "TokenCounter",
    "Window",
    "build_window",
    "estimate_text",
    "load_encoding",
]
