"""`/threadline <command>`: the chat commands as one Slack slash command, and where they apply."""

from __future__ import annotations

from collections import OrderedDict

from core.commands import COMMAND_HELP, Command, parse_command

THREAD_LIMIT = 50_000


def parse_slash(text: str) -> Command | None:
    """`new`, `set temperature 0.3`, `params`, `help`… (with or without a leading `/`)."""
    stripped = text.strip()
    if not stripped:
        return Command(name="help", argument="")
    if not stripped.startswith("/"):
        stripped = "/" + stripped
    return parse_command(stripped)


def slash_help(command: str) -> str:
    """The help of the slash command (the same commands as in a thread, another spelling)."""
    lines = [
        "Every Slack thread with me is one conversation. In a thread, mention me with a command "
        "(`@threadline /new`), or use the slash command, which applies to the thread you last "
        "wrote to me in, in this channel or DM:",
        "",
    ]
    lines += [f"`{command} {name}`: {text}" for name, text in COMMAND_HELP.items()]
    return "\n".join(lines)


class LastThreads:
    """The thread each user last wrote to the bot in, per workspace and channel (bounded)."""

    def __init__(self) -> None:
        self._threads: OrderedDict[tuple[str, str, str], str] = OrderedDict()

    def remember(self, space: str, channel: str, user: str, thread: str) -> None:
        key = (space, channel, user)
        self._threads[key] = thread
        self._threads.move_to_end(key)
        if len(self._threads) > THREAD_LIMIT:
            self._threads.popitem(last=False)

    def find(self, space: str, channel: str, user: str) -> str | None:
        return self._threads.get((space, channel, user))
