"""The API docs load nothing from a CDN: every script, style and icon is served by the collector."""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from tests.support.collector import RunningCollector, run_collector

PAGES = ["/schema", "/schema/swagger", "/schema/redoc"]
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


class Assets(HTMLParser):
    """The URLs a page makes the browser fetch: script src, link href, img src."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.urls.append(value)


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCollector]:
    database = tmp_path_factory.mktemp("openapi") / "usage.db"
    with run_collector(f"sqlite+aiosqlite:///{database}") as running:
        yield running


def assets_of(collector: RunningCollector, page: str) -> list[str]:
    answer = httpx.get(f"{collector.url}{page}")
    assert answer.status_code == 200, page
    assert answer.headers["content-type"].startswith("text/html")
    parser = Assets()
    parser.feed(answer.text)
    assert "cdn." not in answer.text
    assert "fonts.googleapis.com" not in answer.text
    return parser.urls


@pytest.mark.parametrize("page", PAGES)
def test_api_doc_pages_load_every_asset_from_the_collector(
    collector: RunningCollector, page: str
) -> None:
    urls = assets_of(collector, page)

    assert any(url.endswith(".js") for url in urls), urls
    for url in urls:
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == ("", ""), f"{page} loads {url} from elsewhere"
        asset = httpx.get(urljoin(f"{collector.url}{page}", url))
        assert asset.status_code == 200, url
        expected = CONTENT_TYPES[Path(parts.path).suffix]
        assert asset.headers["content-type"].startswith(expected), (url, asset.headers)
        assert len(asset.content) > 100, url
        assert "max-age" in asset.headers["cache-control"]


def test_swagger_gets_its_bundle_styles_and_preset_and_redoc_its_standalone_bundle(
    collector: RunningCollector,
) -> None:
    swagger = {Path(urlsplit(u).path).name for u in assets_of(collector, "/schema/swagger")}
    redoc = {Path(urlsplit(u).path).name for u in assets_of(collector, "/schema/redoc")}

    assert {
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "swagger-ui.css",
    } <= swagger
    assert "redoc.standalone.js" in redoc


def test_assets_are_public_like_the_docs_and_unknown_ones_are_404(
    collector: RunningCollector,
) -> None:
    assets = assets_of(collector, "/schema/swagger")
    bundle = next(u for u in assets if u.endswith("swagger-ui-bundle.js"))

    assert httpx.get(f"{collector.url}{bundle}").status_code == 200  # no credential
    assert httpx.get(f"{collector.url}/schema/assets/none.js").status_code == 404
    assert httpx.get(f"{collector.url}/schema/openapi.json").status_code == 200
