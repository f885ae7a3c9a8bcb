"""Structured logging for both components: JSON lines by default, console text for humans.

Libraries that log every request at INFO (an HTTP client, a database driver, an SDK) can be
named in ``quiet``: they are held at WARNING unless the level is ``debug``, so a command's own
lines are not buried under three lines per call.

Our own (structlog) events are rendered and written directly, under the stdlib handler's lock:
a detour through a stdlib ``LogRecord`` (caller lookup, a second formatter pass) cost about half
of each line, and the collector logs one line per stored report. Stdlib records (libraries,
uncaught exceptions) still go through the handler. Both share the processors that add the level
and time, render tracebacks and redact, so a line looks the same whichever way it came.
"""

from __future__ import annotations

import asyncio
import contextlib
import json as json_module
import logging
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

import structlog

from common.redaction import all_unchanged, redact_event

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


_METHOD_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}


def _drop_below(level: int) -> structlog.types.Processor:
    """A processor that drops events under ``level``.

    A processor rather than a filtering wrapper class: ``structlog.testing.capture_logs`` swaps
    the processors, so tests still see every level, as they did when stdlib did the filtering.
    """

    def drop(_logger: Any, method: str, event: structlog.types.EventDict) -> Any:
        if _METHOD_LEVELS.get(method, logging.NOTSET) < level:
            raise structlog.DropEvent
        return event

    return drop


def _exceptions(logger: Any, method: str, event: structlog.types.EventDict) -> Any:
    """structlog's ``format_exc_info``, skipped for an event without ``exc_info`` (most)."""
    if "exc_info" not in event:
        return event
    return structlog.processors.format_exc_info(logger, method, event)


class _Stamp:
    """structlog's ISO UTC time stamp (``…T03:50:07.441149Z``), its seconds written once each.

    ``datetime.now().isoformat()`` was a tenth of a log line.
    """

    def __init__(self) -> None:
        self._second: tuple[int, str] = (-1, "")

    def text(self, nanoseconds: int) -> str:
        """The stamp of ``nanoseconds`` since the epoch; no fraction when it is a whole second."""
        second, micro = divmod(nanoseconds // 1000, 1_000_000)
        known, prefix = self._second
        if second != known:
            prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = (second, prefix)
        return f"{prefix}.{micro:06d}Z" if micro else f"{prefix}Z"

    def __call__(self, _logger: Any, _method: str, event: structlog.types.EventDict) -> Any:
        event["timestamp"] = self.text(time.time_ns())
        return event


def _plain_texts(values: Iterable[Any], texts: list[str]) -> bool:
    """Collect the strings of JSON-like ``values``; False if any value would need converting."""
    for value in values:
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, list):
            if not _plain_texts(value, texts):
                return False
        elif isinstance(value, dict):
            if not _plain_texts(value.values(), texts):
                return False
        elif not (value is None or isinstance(value, bool | int | float)):
            return False
    return True


def _redact(logger: Any, method: str, event: structlog.types.EventDict) -> Any:
    """``redact_event``, skipped when one scan of the event's text not seen before finds nothing
    to hide (``all_unchanged``).

    The per-value walk costs about a microsecond a value, and most events hold a dozen plain
    ids, names and times. Text under a private (``_``) key may be scanned too: it can only send
    the event to the walk, which skips it.
    """
    texts: list[str] = []
    append = texts.append
    for key, value in event.items():
        kind = type(value)
        if kind is str:
            append(value)
        elif value is None or kind is bool or kind is int or kind is float:
            continue
        elif kind is list and all(type(item) is str for item in value):
            texts.extend(value)
        elif key.startswith("_"):
            continue
        elif not _plain_texts((value,), texts):
            return redact_event(logger, method, event)
    if all_unchanged(texts):
        return event
    return redact_event(logger, method, event)


class _LineHandler(logging.StreamHandler[TextIO]):
    """The stream handler, also taking our own rendered lines; on an event loop's thread the
    INFO and DEBUG lines of one pass of the loop are written together when the pass ends.

    A write per line was a fifth of a line's cost, and the collector logs a line per report.
    Only INFO and DEBUG lines are held: a warning or an error, a stdlib record, a flush and a
    line from a thread without a running loop are written at once, after what is held, so the
    stream keeps the order of events. A SIGKILL loses at most the INFO and DEBUG lines of the
    pass it interrupts.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._held: list[str] = []
        self._draining: asyncio.AbstractEventLoop | None = None

    def line(self, message: str) -> None:
        """A line that may be held until the loop's pass ends (INFO and DEBUG)."""
        loop = asyncio._get_running_loop()  # None, not an exception, off the loop
        with self.lock or contextlib.nullcontext():
            self._held.append(message)
            if loop is None:
                self._write_held()
            elif self._draining is not loop:
                self._draining = loop
                loop.call_soon(self._drain)

    def line_now(self, message: str) -> None:
        """A line written at once, after those held: a warning may be a crash's last words."""
        with self.lock or contextlib.nullcontext():
            self._held.append(message)
            self._write_held()

    def _drain(self) -> None:
        with self.lock or contextlib.nullcontext():
            self._draining = None
            self._write_held()

    def _write_held(self) -> None:
        """Under the lock: the held lines, in one write."""
        if not self._held:
            return
        text = "\n".join(self._held) + "\n"
        self._held.clear()
        try:
            stream = self.stream
            stream.write(text)
            if not getattr(stream, "line_buffering", False):  # else the write flushed it
                stream.flush()
        except Exception:  # as StreamHandler.emit: a failed line is reported, never raised
            self.handleError(logging.makeLogRecord({"msg": text}))

    def emit(self, record: logging.LogRecord) -> None:
        self._write_held()
        super().emit(record)

    def flush(self) -> None:
        with self.lock or contextlib.nullcontext():
            self._write_held()
        super().flush()


class _HandlerWriter:
    """structlog's final logger: one rendered line to the handler (``_LineHandler.line``)."""

    def __init__(self, handler: _LineHandler) -> None:
        for method, level in _METHOD_LEVELS.items():
            setattr(self, method, handler.line if level < logging.WARNING else handler.line_now)
        self.msg = self.log = handler.line_now


def emit(method: str, event: str, fields: dict[str, Any]) -> None:
    """``structlog.get_logger().<method>(event, **fields)`` for a line logged per request.

    The same configured processors and final logger, so a capture or a reconfiguration sees the
    line as it sees any other; without the bound logger a lazy logger builds on every call, a
    third of a line's cost. ``fields`` becomes the event: pass a fresh dict.
    """
    config = structlog.get_config()
    fields["event"] = event
    rendered: Any = fields
    try:
        for processor in config["processors"]:
            rendered = processor(None, method, rendered)
    except structlog.DropEvent:
        return
    final = getattr(config["logger_factory"](), method)
    if isinstance(rendered, str | bytes | bytearray):
        final(rendered)
    elif isinstance(rendered, tuple):
        final(*rendered[0], **rendered[1])
    elif isinstance(rendered, dict):
        final(**rendered)
    else:
        raise ValueError(f"the last processor returned {type(rendered).__name__}")


def configure_logging(
    level: str = "info",
    *,
    json: bool = True,
    stream: TextIO | None = None,
    quiet: Iterable[str] = (),
    serializer: Callable[..., str] = json_module.dumps,
) -> None:
    """Route structlog and the stdlib logging through one renderer writing to ``stream``.

    Every line passes through :func:`common.redaction.redact_event` after any traceback is
    rendered, so secrets never reach the stream, not even inside an exception's text. The
    loggers named in ``quiet`` (and their children) log WARNING and above unless ``level`` is
    ``debug``. ``serializer`` renders JSON lines (``json.dumps``'s signature, ``default`` included).
    """
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(serializer)
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
    ]
    # Stamped after redaction: the clock's text holds no secret, and, new in every line, it
    # would keep redaction from ever knowing a line's text already.
    stamp = _Stamp()
    handler = _LineHandler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                _redact,
                stamp,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for replaced in root.handlers:
        replaced.flush()  # what it holds of this pass is written, not dropped
    root.handlers[:] = [handler]
    sys.excepthook = _log_uncaught
    root.setLevel(level_number(level))
    _quiet(quiet, level_number(level))
    writer = _HandlerWriter(handler)
    # Not cached on first use: tests reconfigure (another stream, capture_logs) after loggers exist.
    structlog.configure(
        processors=[
            _drop_below(level_number(level)),
            *shared,
            _exceptions,
            _redact,
            stamp,
            renderer,
        ],
        logger_factory=lambda *_: writer,
        wrapper_class=structlog.make_filtering_bound_logger(logging.NOTSET),
        cache_logger_on_first_use=False,
    )
