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

from .redaction import redact, redact_rendered


def _redact_processor(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    redacted: MutableMapping[str, Any] = redact(dict(event))
    return redacted


def _redact_rendered(_logger: Any, _method: str, line: Any) -> Any:
    # After rendering too: a formatted exception may quote a secret a driver put there.
    return redact_rendered(line) if isinstance(line, str) else line


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
