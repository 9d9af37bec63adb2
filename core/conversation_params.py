"""A conversation's effective model parameters: the defaults with its stored overrides."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from core.errors import ConfigError
from core.llm import ChatParams

log = logging.getLogger(__name__)


def effective_params(defaults: ChatParams, meta: Mapping[str, Any]) -> ChatParams:
    """`defaults` with the conversation's `/set` overrides; invalid stored overrides ignored."""
    overrides = meta.get("params") or {}
    if not overrides:
        return defaults
    try:
        return defaults.with_overrides(**overrides)
    except ConfigError:
        log.warning("ignoring invalid stored parameter overrides")
        return defaults


def jsonable(params: Mapping[str, object]) -> dict[str, object]:
    """Overrides as stored: tuples become lists."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


__all__ = ["effective_params", "jsonable"]
