"""Replies to chat commands (/new, /help, /params, /set, /unset): no LLM call."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from core.commands import SETTABLE_PARAMS, Command, help_text, parse_param_value
from core.conversation import ConversationKey
from core.conversation_params import effective_params, jsonable
from core.errors import ConfigError
from core.llm import ChatParams
from core.outcome import ServiceConfig
from core.store import HistoryStore


class CommandReplies:
    """Answers commands; /new, /set and /unset change the conversation's meta."""

    def __init__(self, store: HistoryStore, config: ServiceConfig) -> None:
        self._store = store
        self._config = config

    async def reply(self, command: Command, key: ConversationKey) -> str:
        """The reply to `command` in the conversation `key`."""
        if command.name == "help":
            return help_text()
        meta = await self._store.get_meta(key)
        if command.name == "new":
            latest = await self._store.recent(key, limit=1)
            since = latest[-1].id if latest and latest[-1].id is not None else 0
            await self._store.update_meta(key, since_turn=since, truncation_noted=False)
            return "Started a new conversation. Earlier messages will not be sent to the model."
        params = dict(meta.get("params") or {})
        if command.name == "params":
            return _describe_params(effective_params(self._config.params, meta), params)
        name, _, raw = command.argument.partition(" ")
        name = name.strip().lower()
        if name not in SETTABLE_PARAMS:
            return f"Unknown parameter {name!r}. You can set: " + ", ".join(SETTABLE_PARAMS)
        if command.name == "unset":
            params.pop(name, None)
            await self._store.update_meta(key, params=params)
            return f"{name} is back to its default."
        try:
            value = parse_param_value(name, raw)
            params[name] = value
            self._config.params.with_overrides(**params)
        except (ValueError, ConfigError) as exc:
            return f"Could not set {name}: {exc}"
        refusal = self._config.caps.check(name, value)
        if refusal is not None:
            return f"Could not set {name}: {refusal} (a limit set by the operator)."
        window = self._config.context_window
        if name in ("max_tokens", "max_completion_tokens") and int(str(value)) >= window:
            return f"Could not set {name}: it must be smaller than the context window ({window})."
        await self._store.update_meta(key, params=jsonable(params))
        return f"{name} set to {raw.strip()} for this conversation."


def _describe_params(params: ChatParams, overrides: Mapping[str, Any]) -> str:
    lines = ["Parameters for this conversation:"]
    for spec in dataclasses.fields(params):
        value = getattr(params, spec.name)
        if value is None or spec.name == "user":
            continue
        marker = " (set here)" if spec.name in overrides else ""
        lines.append(f"• {spec.name}: {value}{marker}")
    return "\n".join(lines)


__all__ = ["CommandReplies"]
