"""structlog set-up: JSON lines on stderr for CloudWatch, readable lines on a terminal,
and a last processor that blanks out every secret value cloudboot knows.

Event names are an API (``cloudboot.<stage>.<what>``); README lists them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping, Sequence
from typing import Any, TextIO

import structlog

from .secret import known_secrets

REDACTED = "<SECRET>"


def redact(value: Any) -> Any:
    """``value`` with every known secret replaced, recursively through containers."""
    if isinstance(value, str):
        for secret in known_secrets():
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact(v) for v in value)
    return value


def _redact_processor(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    return {key: redact(value) for key, value in event.items()}


def _redact_rendered(_logger: Any, _method: str, line: Any) -> Any:
    # After rendering too: a formatted exception may quote a secret a driver put there.
    return redact(line)


Processor = Any


def configure(
    fmt: str | None,
    level: str,
    stream: TextIO | None = None,
    *,
    before_rendering: Sequence[Processor] = (),
) -> None:
    """Configure structlog. ``fmt`` None picks by terminal: ``console`` on one, else
    ``json``. ``before_rendering`` processors see each event after redaction (the CLI's
    terminal progress line is one)."""
    stream = stream or sys.stderr
    if fmt is None:
        fmt = "console" if stream.isatty() else "json"
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # Traceback to text first, so that it is redacted as a value: once rendered as
            # JSON, a secret with a quote, backslash or non-ASCII letter is escaped and
            # the last pass below would no longer find it.
            structlog.processors.format_exc_info,
            _redact_processor,
            *before_rendering,
            renderer,
            _redact_rendered,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


def get_logger() -> Any:
    return structlog.get_logger("cloudboot")
