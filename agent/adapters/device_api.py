"""Device counts read page by page from the customer's device API over httpx.

Accepted shapes of one page (anything else is a source error, never a crash):

- a JSON list of devices: the whole list, no further pages;
- a JSON object with the devices under ``devices`` (or ``items``, or ``data``) and, optionally,
  the next page as ``next`` (a URL, absolute or relative to the page just read) or
  ``next_cursor`` (sent back to the configured URL as ``?cursor=VALUE``). A missing, null or
  empty ``next``/``next_cursor`` ends the list.

Each device is an object with a string ``status``; a device is active when its status, compared
case-insensitively, is one of the configured active statuses.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import httpx

from agent.errors import SourceError

SOURCE = "device_api"
_LIST_KEYS = ("devices", "items", "data")


@dataclass(frozen=True)
class DeviceCounts:
    """How many devices the API lists, and how many of them are active (and billed)."""

    total: int
    active: int


@dataclass(frozen=True)
class _Page:
    devices: list[Any]
    next_url: str | None


class DeviceApiSource:
    """Counts devices by status; every page is read with the client's timeout."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        url: str,
        *,
        active_statuses: Collection[str] = ("active", "online"),
        page_limit: int = 1000,
        token: str | None = None,
    ) -> None:
        self._client = client
        self._url = url
        self._active = frozenset(s.lower() for s in active_statuses)
        self._page_limit = page_limit
        self._headers = {"Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    async def count(self) -> DeviceCounts:
        """Read every page and count total and active devices."""
        total = active = 0
        url: str | None = self._url
        seen: set[str] = set()
        pages = 0
        while url is not None:
            if pages >= self._page_limit:
                raise SourceError(
                    SOURCE, f"more than {self._page_limit} pages (AGENT_DEVICE_PAGE_LIMIT)"
                )
            if url in seen:
                raise SourceError(SOURCE, f"paging loops back to {url}")
            seen.add(url)
            page = self._parse(await self._get(url), url)
            pages += 1
            for device in page.devices:
                total += 1
                if self._status(device) in self._active:
                    active += 1
            url = page.next_url
        return DeviceCounts(total=total, active=active)

    async def _get(self, url: str) -> Any:
        try:
            response = await self._client.get(url, headers=self._headers)
        except httpx.TimeoutException as exc:
            raise SourceError(SOURCE, f"timed out reading {url}") from exc
        except httpx.HTTPError as exc:
            raise SourceError(SOURCE, f"cannot reach {url}: {exc}") from exc
        if response.status_code != 200:
            raise SourceError(SOURCE, f"{url} answered HTTP {response.status_code}")
        try:
            return response.json()
        except ValueError as exc:
            raise SourceError(SOURCE, f"{url} did not return JSON") from exc

    def _parse(self, body: Any, url: str) -> _Page:
        if isinstance(body, list):
            return _Page(body, None)
        if not isinstance(body, dict):
            raise SourceError(SOURCE, f"{url} returned a {type(body).__name__}, not a list")
        devices = next((body[k] for k in _LIST_KEYS if k in body), None)
        if not isinstance(devices, list):
            raise SourceError(SOURCE, f"{url} has no device list under {'/'.join(_LIST_KEYS)}")
        return _Page(devices, self._next_url(body, url))

    def _next_url(self, body: dict[str, Any], url: str) -> str | None:
        link = body.get("next")
        if link:
            if not isinstance(link, str):
                raise SourceError(SOURCE, f"'next' must be a URL, got {link!r}")
            return str(httpx.URL(url).join(link))
        cursor = body.get("next_cursor")
        if cursor is None or cursor == "":
            return None
        if not isinstance(cursor, str | int) or isinstance(cursor, bool):
            raise SourceError(SOURCE, f"'next_cursor' must be a string, got {cursor!r}")
        return str(httpx.URL(self._url).copy_set_param("cursor", str(cursor)))

    @staticmethod
    def _status(device: Any) -> str:
        if not isinstance(device, dict):
            raise SourceError(SOURCE, f"a device is a {type(device).__name__}, not an object")
        status = device.get("status")
        if not isinstance(status, str):
            raise SourceError(SOURCE, f"device {device.get('id')!r} has no string 'status'")
        return status.strip().lower()
