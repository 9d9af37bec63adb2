"""Builds the Settings once at start-up and turns every validation failure into a ConfigError."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core.errors import ConfigError
from core.settings import Settings


def load_settings(env_file: str | Path | None = ".env", **overrides: Any) -> Settings:
    """Read the environment and `env_file` (if it exists); ConfigError names a bad setting."""
    try:
        return Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise _config_error(exc) from None


def _config_error(exc: ValidationError) -> ConfigError:
    """The first problem, named by its environment variable; the offending value is not echoed."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        setting = ".".join(str(part) for part in error["loc"]) or "settings"
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append((setting, message))
    setting, message = problems[0]
    if len(problems) > 1:
        others = "; ".join(f"{name}: {msg}" for name, msg in problems[1:])
        message = f"{message} (also {others})"
    return ConfigError(setting, message)
