"""Structured logs: one JSON object per line on stderr, with secrets masked.

Every record carries ``ts``, ``level``, ``logger`` and ``message``, plus the
fields passed as ``extra={...}``. Secrets registered with :func:`redact` are
replaced by ``***`` in the final line, whoever logged them: tweepy logs request
headers (the bearer token among them) at DEBUG level, and an exception text may
quote a URL or a header, so masking the formatted line is the only place that
catches them all.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Any, TextIO

MASK = "***"

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def redact(secret: str) -> None:
    """Mask ``secret`` in every log line written from now on."""
    if secret:
        with _secrets_lock:
            _secrets.add(secret)


def mask_secrets(text: str) -> str:
    """``text`` with every registered secret replaced by :data:`MASK`."""
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(
            (key, value) for key, value in vars(record).items() if key not in _STANDARD_ATTRIBUTES
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return mask_secrets(json.dumps(entry, ensure_ascii=False, default=str))


def configure(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send all logging to ``stream`` (stderr) as JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # kafka-python is chatty at INFO (every metadata refresh); its warnings matter.
    logging.getLogger("kafka").setLevel(max(root.level, logging.WARNING))
