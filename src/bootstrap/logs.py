"""cloudboot's logging: JSON lines on stderr for CloudWatch, readable lines on a terminal,
every event through the redactor (:mod:`bootstrap.redaction`).

cloudboot keeps its own structlog configuration instead of structlog's global one, so
that a program importing :mod:`bootstrap` keeps its own logging untouched and cloudboot
never writes to stdout: by default its events go to stderr at ``info``, JSON unless
stderr is a terminal. :func:`configure` changes that (the CLI calls it with the
settings; a library user may, as ``bootstrap.configure_logging``). Event names are an
API: :mod:`bootstrap.events`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import structlog

from .redaction import redact, redact_rendered

Processor = Any
LEVELS = ("debug", "info", "warning", "error")


def _redact_processor(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    redacted: MutableMapping[str, Any] = redact(dict(event))
    return redacted


def _redact_rendered(_logger: Any, _method: str, line: Any) -> Any:
    # After rendering too: a formatted exception may quote a secret a driver put there.
    return redact_rendered(line) if isinstance(line, str) else line


@dataclass
class _Config:
    stream: TextIO | None = None  # None: sys.stderr as it is when an event is logged
    fmt: str | None = None
    level: str = "info"
    before_rendering: Sequence[Processor] = field(default_factory=tuple)


_config = _Config()


def configure(
    fmt: str | None = None,
    level: str = "info",
    stream: TextIO | None = None,
    *,
    before_rendering: Sequence[Processor] = (),
) -> None:
    """Where and how cloudboot logs. ``fmt``: ``json``, ``console``, or ``None`` to pick
    by the stream (``console`` on a terminal); ``level``: ``debug``, ``info``,
    ``warning`` or ``error``; ``stream``: default stderr. ``before_rendering``
    processors see each event after redaction (the CLI's terminal progress line is
    one). Only cloudboot's own loggers are affected."""
    if level.lower() not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}")
    if fmt not in (None, "json", "console"):
        raise ValueError("fmt must be json, console or None")
    global _config  # noqa: PLW0603 - the one configuration of cloudboot's loggers
    _config = _Config(stream, fmt, level.lower(), tuple(before_rendering))


def get_logger() -> Any:
    """A logger with cloudboot's configuration as it is now."""
    config = _config
    stream = config.stream or sys.stderr
    fmt = config.fmt or ("console" if _isatty(stream) else "json")
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=_isatty(stream))
    )
    return structlog.wrap_logger(
        structlog.WriteLogger(stream),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # Traceback to text first, so that it is redacted as a value: once rendered as
            # JSON, a secret with a quote, backslash or non-ASCII letter is escaped.
            structlog.processors.format_exc_info,
            _redact_processor,
            *config.before_rendering,
            renderer,
            _redact_rendered,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[config.level.upper()]
        ),
    )


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed, or not a real stream
        return False
