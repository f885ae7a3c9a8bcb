"""Secret redaction for log lines and error text: known secret shapes and registered values."""

from __future__ import annotations

import re
import threading
from collections.abc import MutableMapping
from typing import Any

REDACTED = "[REDACTED]"
MIN_REGISTERED_LENGTH = 6

# Shapes that are secret wherever they appear, so an unregistered secret (one echoed back by a
# server, or read from a file the process never registered) is still hidden.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(?:sk|rk)_(?:test|live)_[A-Za-z0-9]{4,}"), REDACTED),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=]{4,}"), REDACTED),
    (re.compile(r"\bum[tk]_[A-Za-z0-9_-]{8,}"), REDACTED),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}"), rf"\1 {REDACTED}"),
    (re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@"), rf"\1{REDACTED}@"),
    (re.compile(r"(?i)\b(password|passwd|pwd)(\s*[=:]\s*)[^\s,;&'\"]+"), rf"\1\2{REDACTED}"),
)

# Every pattern above needs one of these markers, so text without any is left as it is after one
# scan instead of six: most log values are ids, names and times.
_MARKER_WORDS = ("sk_", "rk_", "whsec_", "umt_", "umk_", "bearer", "basic", "://", "passw", "pwd")
_MARKERS = re.compile("(?i)" + "|".join(map(re.escape, _MARKER_WORDS)))

_lock = threading.Lock()
_registered: frozenset[str] = frozenset()
_longest_first: tuple[str, ...] = ()

KNOWN_CLEAN_LIMIT = 4096
"""Texts ``all_unchanged`` remembers before it starts over (it forgets them all at once)."""
_known_clean: set[str] = set()
_generation = 0


def _may_hold_shape(text: str) -> bool:
    """Whether ``text`` holds a marker, ignoring case as ``_MARKERS`` does.

    ASCII text is lowered and searched for each word, a tenth of the regular expression's cost;
    other text keeps the expression, whose case folding also matches letters such as U+017F.
    """
    if text.isascii():
        lowered = text.lower()
        return any(word in lowered for word in _MARKER_WORDS)
    return _MARKERS.search(text) is not None


def register_secret(*values: str | None) -> None:
    """Hide these exact values from now on (short values are ignored: they would hide words)."""
    global _registered, _longest_first
    fresh = {v for v in values if v and len(v) >= MIN_REGISTERED_LENGTH}
    if fresh:
        with _lock:
            _registered = _registered | fresh
            _longest_first = tuple(sorted(_registered, key=len, reverse=True))
            _forget_clean()


def forget_secrets() -> None:
    """Drop every registered value (tests)."""
    global _registered, _longest_first
    with _lock:
        _registered = frozenset()
        _longest_first = ()
        _forget_clean()


def _forget_clean() -> None:
    """Under ``_lock``: what was clean may hold a value registered now."""
    global _generation
    _generation += 1
    _known_clean.clear()


def all_unchanged(texts: list[str]) -> bool:
    """True only if ``redact`` leaves each of ``texts`` as it is: one scan of those not seen.

    Each secret shape and registered value found in one text is also found in the texts joined,
    so an unchanged join means every text is unchanged (a changed one may be a false alarm,
    which the caller settles text by text). Texts found clean are remembered until a secret is
    registered: log lines repeat the same customers, windows and names.
    """
    unseen = [text for text in texts if text not in _known_clean]
    if not unseen:
        return True
    generation = _generation
    joined = "\n".join(unseen)
    if redact(joined) != joined:
        return False
    with _lock:
        if generation == _generation:
            if len(_known_clean) + len(unseen) > KNOWN_CLEAN_LIMIT:
                _known_clean.clear()
            _known_clean.update(unseen)
    return True


def redact(text: str) -> str:
    """``text`` with every registered secret and every secret-shaped token replaced."""
    for value in _longest_first:
        if value in text:
            text = text.replace(value, REDACTED)
    if not _may_hold_shape(text):
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_value(value: Any) -> Any:
    """Strings redacted, containers walked, anything else turned into redacted text if needed."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, dict):
        return {key: redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(item) for item in value]
    return redact(str(value))


def redact_event(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Any:
    """A structlog processor: runs after exceptions are rendered, before the renderer."""
    for key, value in list(event.items()):
        if key.startswith("_"):
            continue
        event[key] = redact_value(value)
    return event
