"""The agent's errors. Whether a failure is retried is decided by its type."""

from __future__ import annotations

from common.errors import MeteringError, PermanentError, TransientError


class AgentError(MeteringError):
    """Root of every error the agent raises on purpose."""


class SourceError(AgentError, TransientError):
    """A usage source (Prometheus, the device API, a /metrics scrape) failed for this window."""

    def __init__(self, source: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"{source}: {message}", retry_after=retry_after)
        self.source = source


class NoDataError(SourceError):
    """A source answered but held no series for the metric: nothing was measured."""


class ResultTooLargeError(SourceError):
    """A query returned more series or samples than the configured cap."""


class CollectorRejected(AgentError, PermanentError):
    """The collector refused the report (4xx other than 408/429); resending cannot help."""

    def __init__(self, message: str, *, status: int, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class CollectorConflict(CollectorRejected):
    """The collector already holds a different report under the same ``report_id`` (409)."""


class CollectorUnavailable(AgentError, TransientError):
    """The collector could not take the report now: network error, 5xx, 408 or 429."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.status = status


class ConfigurationError(AgentError, PermanentError):
    """The agent's settings cannot work; the message says which setting to fix."""


class StateError(AgentError, PermanentError):
    """The agent's state file cannot be read or written."""


class KubeApiError(AgentError, TransientError):
    """The Kubernetes API could not answer now: network error, timeout or 5xx."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class KubeConflict(AgentError, TransientError):
    """Someone else changed the object first (HTTP 409); read it again and decide anew."""


class KubeRefused(AgentError, PermanentError):
    """The Kubernetes API refused the call for good: not found, forbidden or invalid."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status
