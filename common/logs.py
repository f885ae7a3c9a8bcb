"""Structured logging for both components: JSON lines by default, console text for humans.

Libraries that log every request at INFO (an HTTP client, a database driver, an SDK) can be
named in ``quiet``: they are held at WARNING unless the level is ``debug``, so a command's own
lines are not buried under three lines per call.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any, TextIO

import structlog

from common.redaction import redact_event

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def level_number(level: str) -> int:
    """The stdlib level for a name such as ``info``; unknown names raise ``ValueError``."""
    try:
        return _LEVELS[level.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(_LEVELS)}") from None


_quieted: set[str] = set()


def _quiet(loggers: Iterable[str], level: int) -> None:
    """Hold ``loggers`` at WARNING below ``debug``; undo what an earlier call held."""
    for name in _quieted:
        logging.getLogger(name).setLevel(logging.NOTSET)
    _quieted.clear()
    if level <= logging.DEBUG:
        return
    for name in loggers:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
        _quieted.add(name)


def _log_uncaught(kind: type[BaseException], error: BaseException, trace: Any) -> None:
    """Uncaught exceptions go through the (redacting) log handler, not straight to stderr."""
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, trace)
        return
    logging.getLogger("uncaught").critical("uncaught exception", exc_info=(kind, error, trace))


def configure_logging(
    level: str = "info",
    *,
    json: bool = True,
    stream: TextIO | None = None,
    quiet: Iterable[str] = (),
) -> None:
    """Route structlog and the stdlib logging through one renderer writing to ``stream``.

    Every line passes through :func:`common.redaction.redact_event` after any traceback is
    rendered, so secrets never reach the stream, not even inside an exception's text. The
    loggers named in ``quiet`` (and their children) log WARNING and above unless ``level`` is
    ``debug``.
    """
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact_event,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    sys.excepthook = _log_uncaught
    root.setLevel(level_number(level))
    _quiet(quiet, level_number(level))
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
