"""Sampling and length parameters of a Chat Completions request, validated on construction."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from core.errors import ConfigError

_MAX_STOP_SEQUENCES = 4
_MAX_N = 128
_LOGIT_BIAS_LIMIT = 100
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class ChatParams:
    """Model and sampling parameters; `None` means "not sent, server default".

    Every value is checked against the ranges of the OpenAI spec when the object is built;
    a bad value raises `ConfigError` naming the parameter and the allowed range. `stop` is
    normalised to a tuple and `logit_bias` to a read-only mapping with integer token ids.
    """

    model: str
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    stop: str | Sequence[str] | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: Mapping[int, int] | Mapping[str, int] | None = None
    user: str | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.stop is not None:
            object.__setattr__(self, "stop", _stop_tuple(self.stop))
        if self.logit_bias is not None:
            object.__setattr__(self, "logit_bias", _logit_bias_mapping(self.logit_bias))
        self.validate()

    def validate(self) -> None:
        """Raise `ConfigError` for the first parameter outside its documented range."""
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError("model", "must be a non-empty model name")
        _check_number("temperature", self.temperature, 0, 2)
        _check_number("top_p", self.top_p, 0, 1)
        _check_integer("n", self.n, 1, _MAX_N)
        _check_integer("max_tokens", self.max_tokens, 1, None)
        _check_integer("max_completion_tokens", self.max_completion_tokens, 1, None)
        _check_number("presence_penalty", self.presence_penalty, -2, 2)
        _check_number("frequency_penalty", self.frequency_penalty, -2, 2)
        _check_integer("seed", self.seed, _INT64_MIN, _INT64_MAX)
        if self.user is not None and (not isinstance(self.user, str) or not self.user):
            raise ConfigError("user", f"must be a non-empty string, got {self.user!r}")
        if self.stop is not None:
            _stop_tuple(self.stop)
        if self.logit_bias is not None:
            _logit_bias_mapping(self.logit_bias)

    @property
    def stop_sequences(self) -> tuple[str, ...]:
        """The stop sequences as a tuple (empty when none are set)."""
        if self.stop is None:
            return ()
        return _stop_tuple(self.stop)

    def to_payload(self) -> dict[str, Any]:
        """The set parameters as Chat Completions JSON fields (unset ones are left out)."""
        payload: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None:
                continue
            if field.name == "stop":
                value = list(self.stop_sequences)
            elif field.name == "logit_bias":
                value = {str(token): bias for token, bias in value.items()}
            payload[field.name] = value
        return payload

    def with_overrides(self, **overrides: Any) -> ChatParams:
        """A copy with some parameters replaced (`None` unsets one); validated again."""
        known = {field.name for field in dataclasses.fields(self)}
        for name in overrides:
            if name not in known:
                raise ConfigError(
                    name, f"unknown chat parameter; known: {', '.join(sorted(known))}"
                )
        return dataclasses.replace(self, **overrides)


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_number(name: str, value: object, low: float, high: float) -> None:
    if value is None:
        return
    if not _is_real(value):
        raise ConfigError(name, f"must be a number between {low} and {high}, got {value!r}")
    number = float(value)  # type: ignore[arg-type]
    if math.isnan(number) or not low <= number <= high:
        raise ConfigError(name, f"must be between {low} and {high}, got {value!r}")


def _check_integer(name: str, value: object, low: int, high: int | None) -> None:
    if value is None:
        return
    allowed = f"between {low} and {high}" if high is not None else f"at least {low}"
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(name, f"must be an integer {allowed}, got {value!r}")
    if value < low or (high is not None and value > high):
        raise ConfigError(name, f"must be {allowed}, got {value!r}")


def _stop_tuple(stop: object) -> tuple[str, ...]:
    if isinstance(stop, str):
        sequences: tuple[object, ...] = (stop,)
    elif isinstance(stop, Sequence):
        sequences = tuple(stop)
    else:
        raise ConfigError(
            "stop",
            f"must be a string or a list of 1 to {_MAX_STOP_SEQUENCES} strings, got {stop!r}",
        )
    if not 1 <= len(sequences) <= _MAX_STOP_SEQUENCES:
        raise ConfigError(
            "stop", f"must hold between 1 and {_MAX_STOP_SEQUENCES} sequences, got {len(sequences)}"
        )
    for sequence in sequences:
        if not isinstance(sequence, str) or not sequence:
            raise ConfigError(
                "stop", f"each stop sequence must be a non-empty string, got {sequence!r}"
            )
    return tuple(str(sequence) for sequence in sequences)


def _token_id(token: object) -> int:
    if isinstance(token, int) and not isinstance(token, bool):
        token_id = token
    elif isinstance(token, str) and token.strip().isdigit():
        token_id = int(token.strip())
    else:
        raise ConfigError(
            "logit_bias", f"keys must be token ids (integers or numeric strings), got {token!r}"
        )
    if token_id < 0:
        raise ConfigError("logit_bias", f"token ids must not be negative, got {token!r}")
    return token_id


def _logit_bias_mapping(logit_bias: object) -> Mapping[int, int]:
    if not isinstance(logit_bias, Mapping):
        raise ConfigError(
            "logit_bias", f"must be a mapping of token id to bias, got {type(logit_bias).__name__}"
        )
    normalised: dict[int, int] = {}
    for token, bias in logit_bias.items():
        token_id = _token_id(token)
        limit = _LOGIT_BIAS_LIMIT
        if not isinstance(bias, int) or isinstance(bias, bool) or not -limit <= bias <= limit:
            raise ConfigError(
                "logit_bias",
                f"bias for token {token_id} must be an integer between -{limit} and {limit}, "
                f"got {bias!r}",
            )
        normalised[token_id] = bias
    return MappingProxyType(normalised)
