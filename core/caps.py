"""Limits an operator sets on what users may ask for: n, max tokens, models, logit_bias size."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ParamCaps:
    """Caps users cannot exceed with /set; `check` names the parameter and the allowed range."""

    max_n: int = 4
    max_tokens: int | None = None
    allowed_models: Sequence[str] = ()
    max_logit_bias: int = 300

    def check(self, name: str, value: object) -> str | None:
        """Why `value` is not allowed for parameter `name`, or None when it is."""
        if name == "n" and isinstance(value, int) and not 1 <= value <= self.max_n:
            return f"n must be between 1 and {self.max_n}"
        if (
            name in ("max_tokens", "max_completion_tokens")
            and self.max_tokens is not None
            and isinstance(value, int)
            and value > self.max_tokens
        ):
            return f"{name} must be at most {self.max_tokens}"
        if name == "model" and self.allowed_models and value not in self.allowed_models:
            return f"model must be one of: {', '.join(self.allowed_models)}"
        if name == "logit_bias" and isinstance(value, Mapping) and len(value) > self.max_logit_bias:
            return f"logit_bias may hold at most {self.max_logit_bias} tokens"
        return None

    def check_all(self, values: Mapping[str, object]) -> str | None:
        """The first refusal among `values`, or None."""
        for name, value in values.items():
            refusal = self.check(name, value)
            if refusal is not None:
                return refusal
        return None
