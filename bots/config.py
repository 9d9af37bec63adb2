"""Builds the Settings once at start-up and turns every validation failure into a ConfigError."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core.errors import ConfigError
from core.settings import Settings

SETTING_NAME = re.compile(r"\b(?:THREADLINE|OPENAI|SLACK|TELEGRAM|DISCORD)_[A-Z_]+\b")


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
        message = str(error["msg"]).removeprefix("Value error, ")
        named = SETTING_NAME.search(message)
        setting = ".".join(str(part) for part in error["loc"]) or (
            named.group(0) if named else "settings"
        )
        problems.append((setting, message))
    setting, message = problems[0]
    if len(problems) > 1:
        others = "; ".join(f"{name}: {msg}" for name, msg in problems[1:])
        message = f"{message} (also {others})"
    return ConfigError(setting, message)
