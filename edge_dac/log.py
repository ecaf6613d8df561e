"""Logging set-up: one line per event through loguru.

Under systemd (``JOURNAL_STREAM`` is set) journald adds its own timestamps and priority, so the
format drops the time to avoid printing it twice.
"""

from __future__ import annotations

import os
import sys

from loguru import logger

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")  # what --log-level accepts (any case)
_CONSOLE_FORMAT = "<green>{time:HH:mm:ss}</green> <level>{level: <7}</level> {message}"
_JOURNAL_FORMAT = "{level}: {message}"


def setup_logging(level: str = "INFO") -> None:
    """Send log lines to stderr; plain, timestamp-free lines under journald."""
    logger.remove()
    under_journald = bool(os.environ.get("JOURNAL_STREAM"))
    logger.add(
        sys.stderr,
        level=level.upper(),
        format=_JOURNAL_FORMAT if under_journald else _CONSOLE_FORMAT,
        colorize=None if not under_journald else False,
        backtrace=False,
        diagnose=False,
    )
