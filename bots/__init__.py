"""Settings loading, wiring, the CLI and the process runner."""

from bots.cli import main

__all__ = ["main"]
