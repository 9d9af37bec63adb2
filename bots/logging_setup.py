"""Logging to stderr with every configured secret masked, whatever logs it."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
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


class JsonFormatter(MaskingFormatter):
    """One JSON object per line: time, level, logger, message, an answer's fields, traceback."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__("%(message)s", secrets)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        answer = getattr(record, "answer", None)
        if isinstance(answer, dict):
            entry.update(answer)
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return self.mask(json.dumps(entry, ensure_ascii=False, default=str))


def configure_logging(level: str, secrets: Iterable[str], *, json_lines: bool = False) -> None:
    """Send logs to stderr at `level` (as text, or one JSON object per line), masking
    `secrets` in everything written."""
    handler = logging.StreamHandler(sys.stderr)
    secrets = list(secrets)
    formatter: logging.Formatter = (
        JsonFormatter(secrets)
        if json_lines
        else MaskingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", secrets)
    )
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "aiosqlite", "asyncio", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
