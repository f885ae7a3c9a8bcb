"""The retry policy lives in the error type.

Every package has its own error root, derived from ``MeteringError``. A
``TransientError`` may succeed when retried; a ``PermanentError`` never will.
"""

from __future__ import annotations


class MeteringError(Exception):
    """Root of every error this project raises on purpose."""

    retryable: bool = False


class TransientError(MeteringError):
    """A failure that may succeed later: network, 5xx, 429, a lock."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(MeteringError):
    """A failure that retrying cannot fix: bad input, a conflict, a missing object."""

    retryable = False


class SchemaError(PermanentError):
    """A report or catalogue entry does not satisfy the schema."""
