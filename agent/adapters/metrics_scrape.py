"""A direct scrape of a Prometheus text ``/metrics`` endpoint, for installs with no Prometheus."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

import httpx
from prometheus_client.parser import text_string_to_metric_families

from agent.adapters.series import SeriesKey, series_key
from agent.errors import ConfigurationError, SourceError

SOURCE = "metrics_scrape"
_SELECTOR = re.compile(r"^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{(.*)\})?\s*$")
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=|!=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


@dataclass(frozen=True)
class SeriesSelector:
    """A metric name with optional ``label="value"`` / ``label!="value"`` matchers."""

    name: str
    equal: tuple[tuple[str, str], ...] = ()
    not_equal: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> SeriesSelector:
        """Parse the simple PromQL selectors a scrape can evaluate; anything else is refused."""
        match = _SELECTOR.match(text)
        if not match:
            raise ConfigurationError(
                f'{text!r} is not a plain series selector such as name{{label="value"}}; '
                "a direct /metrics scrape cannot evaluate PromQL expressions"
            )
        equal: list[tuple[str, str]] = []
        not_equal: list[tuple[str, str]] = []
        body = (match.group(2) or "").strip()
        pos = 0
        while pos < len(body):
            matcher = _MATCHER.match(body, pos)
            if not matcher or matcher.end() == pos:
                raise ConfigurationError(f"unsupported label matcher in {text!r}")
            label, op, value = matcher.groups()
            (equal if op == "=" else not_equal).append((label, value.replace('\\"', '"')))
            pos = matcher.end()
        return cls(match.group(1), tuple(equal), tuple(not_equal))

    def matches(self, name: str, labels: dict[str, str]) -> bool:
        if name != self.name:
            return False
        if any(labels.get(k, "") != v for k, v in self.equal):
            return False
        return all(labels.get(k, "") != v for k, v in self.not_equal)


@dataclass(frozen=True)
class Scrape:
    """Every sample of one scrape."""

    samples: tuple[tuple[str, dict[str, str], Decimal], ...]

    def select(self, selector: SeriesSelector) -> dict[SeriesKey, Decimal]:
        """The value of each series the selector matches."""
        return {
            series_key(labels): value
            for name, labels, value in self.samples
            if selector.matches(name, labels)
        }


class MetricsScrapeSource:
    """Fetches and parses one /metrics endpoint with an injected httpx client."""

    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        self._client = client
        self._url = url

    async def scrape(self) -> Scrape:
        """Fetch and parse the endpoint; any failure is a source error."""
        try:
            response = await self._client.get(self._url, headers={"Accept": "text/plain"})
        except httpx.TimeoutException as exc:
            raise SourceError(SOURCE, f"timed out scraping {self._url}") from exc
        except httpx.HTTPError as exc:
            raise SourceError(SOURCE, f"cannot scrape {self._url}: {exc}") from exc
        if response.status_code != 200:
            raise SourceError(SOURCE, f"{self._url} answered HTTP {response.status_code}")
        return parse_metrics_text(response.text)


def parse_metrics_text(text: str) -> Scrape:
    """Parse Prometheus text exposition; non-finite or malformed values are a source error."""
    samples: list[tuple[str, dict[str, str], Decimal]] = []
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                value = Decimal(repr(float(sample.value)))
                if not value.is_finite():
                    raise SourceError(SOURCE, f"{sample.name} has non-finite value {sample.value}")
                samples.append((sample.name, dict(sample.labels), value))
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise SourceError(SOURCE, f"cannot parse the /metrics text: {exc}") from exc
    return Scrape(tuple(samples))
