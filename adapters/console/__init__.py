"""Console channel: a terminal as a chat platform."""

from adapters.console.inbound import console_key, to_inbound
from adapters.console.runner import ConsoleChannel
from adapters.console.sink import ConsoleSink

__all__ = ["ConsoleChannel", "ConsoleSink", "console_key", "to_inbound"]
