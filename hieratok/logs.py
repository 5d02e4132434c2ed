"""Diagnostics go through Python `logging`; results (a command's JSON summary, a report) stay on stdout.

Every module logs to `logging.getLogger(__name__)`, so under "hieratok", "data_pipeline" or "cluster".
A command gives those loggers one stderr handler whose lines read `hieratok COMMAND: message` (info) or
`hieratok COMMAND: warning: message`, at the level of `hieratok --log-level LEVEL` or of the variable
HIERATOK_LOG_LEVEL (default info). Used as a library, nothing is configured: warnings reach Python's
last-resort handler, and an application's own logging set-up sees every record.
"""
from __future__ import annotations

import logging
import os
import sys

LOGGERS = ("hieratok", "data_pipeline", "cluster")
LEVELS = ("debug", "info", "warning", "error")


class _CommandFormatter(logging.Formatter):
    def __init__(self, command: str):
        super().__init__()
        self.command = command

    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        line = f"hieratok {self.command}: {level}{record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _CommandHandler(logging.StreamHandler):
    """Marks the handler this module installed, so that configuring again replaces it."""


def configure(command: str, level: str | None = None, stream=None) -> None:
    """Install the command's handler on every logger of the project (idempotent)."""
    name = (level or os.environ.get("HIERATOK_LOG_LEVEL") or "info").lower()
    if name not in LEVELS:
        from hieratok.config.errors import ConfigError

        raise ConfigError(f"log level {name!r} (--log-level or HIERATOK_LOG_LEVEL): valid levels are {', '.join(LEVELS)}")
    handler = _CommandHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(_CommandFormatter(command))
    for logger_name in LOGGERS:
        logger = logging.getLogger(logger_name)
        for old in [h for h in logger.handlers if isinstance(h, _CommandHandler)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(name.upper())
        logger.propagate = False  # one line per record, not a second one from a root handler
