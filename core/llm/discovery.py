"""Read what a server publishes about its models: ids, and the context size of each."""

from __future__ import annotations

from typing import Any

from core.errors import LLMRejected

# Fields of a /models entry that give the model's context size, by server.
_ENTRY_FIELDS = ("max_model_len", "context_length", "context_window", "max_context_length")


def model_ids(document: Any) -> list[str]:
    """The ids in a `GET /models` answer; `LLMRejected` when it is not such a listing."""
    entries = _entries(document)
    if entries is None:
        raise LLMRejected(200, "the server's /models answer is not a list")
    return [entry["id"] for entry in entries if isinstance(entry.get("id"), str)]


def context_window_of(document: Any, model: str) -> int | None:
    """`model`'s context size in a `GET /models` answer: vLLM `max_model_len`, OpenRouter
    `context_length` (also `top_provider.context_length`); None when not listed."""
    for entry in _entries(document) or []:
        if entry.get("id") != model and entry.get("canonical_slug") != model:
            continue
        for name in _ENTRY_FIELDS:
            found = _positive(entry.get(name))
            if found is not None:
                return found
        provider = entry.get("top_provider")
        if isinstance(provider, dict):
            return _positive(provider.get("context_length"))
    return None


def props_context_window(document: Any) -> int | None:
    """The per-slot context size in llama.cpp's `GET /props`: the slot's `n_ctx`, else the
    top-level `n_ctx` (older builds)."""
    if not isinstance(document, dict):
        return None
    settings = document.get("default_generation_settings")
    if isinstance(settings, dict):
        found = _positive(settings.get("n_ctx"))
        if found is not None:
            return found
    return _positive(document.get("n_ctx"))


def server_root(base_url: str) -> str:
    """The server's root for endpoints outside the OpenAI API (`.../v1` -> `...`)."""
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def _entries(document: Any) -> list[dict[str, Any]] | None:
    models = document.get("data") if isinstance(document, dict) else None
    if not isinstance(models, list):
        return None
    return [entry for entry in models if isinstance(entry, dict)]


def _positive(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if value > 0 else None


__all__ = ["context_window_of", "model_ids", "props_context_window", "server_root"]
