"""Chat commands every channel offers: /new, /help, /params, /set and /unset."""

from __future__ import annotations

import json
from dataclasses import dataclass

COMMAND_HELP: dict[str, str] = {
    "new": "start a new conversation (earlier messages are no longer sent to the model)",
    "help": "show what the bot understands",
    "params": "show the model parameters used in this conversation",
    "set": "set a parameter for this conversation, e.g. /set temperature 0.2",
    "unset": "go back to the default for a parameter, e.g. /unset temperature",
    "stop": "stop the answer being written here (yours, or any if you are an admin)",
}

SETTABLE_PARAMS: tuple[str, ...] = (
    "model",
    "temperature",
    "top_p",
    "n",
    "stop",
    "max_tokens",
    "max_completion_tokens",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "seed",
)


@dataclass(frozen=True, slots=True)
class Command:
    """A parsed command: its name and the rest of the text."""

    name: str
    argument: str


def parse_command(text: str, bot_username: str | None = None) -> Command | None:
    """Parse `/name args` (also `/name@bot args`); None when the text is not a known command."""
    stripped = text.strip()
    if not stripped.startswith("/"):
        return None
    head, _, rest = stripped[1:].partition(" ")
    name, _, target = head.partition("@")
    if target and bot_username and target.lower() != bot_username.lower():
        return None
    name = name.lower()
    if name not in COMMAND_HELP:
        return None
    return Command(name=name, argument=rest.strip())


def help_text() -> str:
    """The /help answer."""
    lines = ["I answer with a language model; every thread or chat is one conversation.", ""]
    lines += [f"/{name}: {text}" for name, text in COMMAND_HELP.items()]
    lines.append("")
    lines.append("Parameters you can /set: " + ", ".join(SETTABLE_PARAMS))
    return "\n".join(lines)


def parse_param_value(name: str, raw: str) -> object:
    """Turn the text of `/set NAME VALUE` into a typed value; raises ValueError when malformed."""
    raw = raw.strip()
    if not raw:
        raise ValueError(f"/set {name} needs a value")
    if name == "model":
        return raw
    if name in ("n", "max_tokens", "max_completion_tokens", "seed"):
        return int(raw)
    if name == "stop":
        if raw.startswith("["):
            parsed = json.loads(raw)
            if not isinstance(parsed, list):
                raise ValueError("stop must be a string or a JSON list of strings")
            return tuple(str(item) for item in parsed)
        return (raw,)
    if name == "logit_bias":
        parsed = json.loads(raw)
        if not isinstance(parsed, dict):
            raise ValueError('logit_bias must be a JSON object such as {"50256": -100}')
        return {str(k): int(v) for k, v in parsed.items()}
    return float(raw)
