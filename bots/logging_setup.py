"""Logging to stderr with every configured secret masked, whatever logs it."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from urllib.parse import unquote


class MaskingFormatter(logging.Formatter):
    """Formats a record (message, traceback and stack) and replaces each secret with `***`."""

    def __init__(self, fmt: str, secrets: Iterable[str]) -> None:
        super().__init__(fmt)
        values = set()
        for secret in secrets:
            if secret and len(secret) >= 4:
                values.update({secret, unquote(secret)})
        self._secrets = sorted(values, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        return self.mask(super().format(record))

    def mask(self, text: str) -> str:
        """`text` with every secret replaced."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def configure_logging(level: str, secrets: Iterable[str]) -> None:
    """Send logs to stderr at `level`, masking `secrets` in everything written."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        MaskingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", secrets)
    )
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "aiosqlite", "asyncio", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
