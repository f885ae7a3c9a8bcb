"""Which peak expressions are read from raw samples, and what the storage provider reports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from agent.adapters.prometheus import GaugeSamples, GridPeak
from agent.errors import SourceError
from agent.services.peak_expression import Decomposed, NotDecomposable, decompose
from agent.services.providers import PrometheusPeak
from common.schema import MetricCoverage
from common.windows import EPOCH, Window

WINDOW = Window(datetime(2024, 3, 1, 10, tzinfo=UTC), datetime(2024, 3, 1, 11, tzinfo=UTC))
START_MS = (WINDOW.start - EPOCH) // timedelta(milliseconds=1)
END_MS = (WINDOW.end - EPOCH) // timedelta(milliseconds=1)
GB = Decimal(10**9)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("kubelet_volume_stats_used_bytes", Decomposed("kubelet_volume_stats_used_bytes", False)),
        ("sum(used_bytes)", Decomposed("used_bytes", True)),
        (
            ' sum ( used_bytes{namespace="a", pvc=~"data-.*",job!="x",k!~\'y\'} ) ',
            Decomposed('used_bytes{namespace="a", pvc=~"data-.*",job!="x",k!~\'y\'}', True),
        ),
        ('SUM(used_bytes{a="}),("})', Decomposed('used_bytes{a="}),("}', True)),
        (
            'sum({__name__="used_bytes",a=`b\\`})',
            Decomposed('{__name__="used_bytes",a=`b\\`}', True),
        ),
        ('sum(x{a="\\"", })', Decomposed('x{a="\\"", }', True)),
        ("sum by (pvc, ns) (used_bytes)", Decomposed("used_bytes", True, ("pvc", "ns"))),
        ("sum(used_bytes) by (pvc)", Decomposed("used_bytes", True, ("pvc",))),
        ("sum by () (used_bytes)", Decomposed("used_bytes", True, ())),
        ("namespace:used_bytes:sum", Decomposed("namespace:used_bytes:sum", False)),
    ],
)
def test_a_selector_or_a_sum_of_one_is_read_from_raw_samples(expression, expected):
    assert decompose(expression) == expected


@pytest.mark.parametrize(
    "expression",
    [
        "sum(a) + sum(b)",
        "max(used_bytes)",
        "sum without (pod) (used_bytes)",
        "sum(rate(used_bytes[5m]))",
        "sum(used_bytes offset 5m)",
        "sum(used_bytes @ 1700000000)",
        "used_bytes[5m]",
        "sum(sum(used_bytes))",
        "sum by (a) (used_bytes) by (b)",
        "sum(used_bytes) > 0",
        "-used_bytes",
        "used_bytes * 1024",
        'sum({"used.bytes"})',
        'sum(used_bytes{a="b)',
        "sum",
        "sum()",
        "offset",
        "",
        "sum(used_bytes) # comment",
        "sum by (a:b) (used_bytes)",
    ],
)
def test_anything_else_falls_back_to_the_grid(expression):
    assert isinstance(decompose(expression), NotDecomposable)


names = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
label_values = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)))


def quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


@given(
    name=names,
    matchers=st.lists(st.tuples(names, st.sampled_from(["=", "!=", "=~", "!~"]), label_values)),
    by=st.lists(names, max_size=3),
)
def test_the_selector_is_passed_through_exactly_as_written(name, matchers, by):
    selector = name + "{" + ", ".join(f"{k}{op}{quoted(v)}" for k, op, v in matchers) + "}"
    grouping = f"by ({', '.join(by)}) " if by else ""
    assume(not isinstance(decompose(name), NotDecomposable))  # not a keyword like "sum"

    assert decompose(f"sum {grouping}({selector})") == Decomposed(selector, True, tuple(by))


class Gauges:
    """Serves fixed raw samples, or a fixed grid answer, and records which was asked for."""

    def __init__(self, series=None, grid: GridPeak | None = None) -> None:
        self.series = series or {}
        self.grid = grid
        self.asked: list[str] = []

    async def gauge_samples(self, selector, window, lookback) -> GaugeSamples:
        self.asked.append(f"raw {selector} {lookback}")
        return GaugeSamples(START_MS, END_MS, 15_000, self.series)

    async def peak(self, expression, window) -> GridPeak:
        self.asked.append(f"grid {expression}")
        assert self.grid is not None
        return self.grid


def key(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"__name__": "used_bytes", **labels}.items()))


def every_minute(value: Decimal) -> list[tuple[int, Decimal]]:
    return [(START_MS + minute * 60_000, value) for minute in range(1, 61)]


async def test_a_sum_by_with_one_group_is_that_groups_peak():
    source = Gauges(
        {key(pvc="a", ns="x"): every_minute(GB), key(pvc="b", ns="x"): every_minute(GB)}
    )
    measured = await PrometheusPeak("storage_gb", source, "sum by (ns) (used_bytes)").measure(
        WINDOW
    )

    assert measured.metrics == {"storage_gb": 2.0}
    assert measured.coverage == {
        "storage_gb": MetricCoverage(samples=120, expected=120, series=2, method="raw")
    }
    assert source.asked == ["raw used_bytes 0:05:00"]


@pytest.mark.parametrize("expression", ["sum by (pvc) (used_bytes)", "used_bytes"])
async def test_several_output_series_is_an_error_as_before(expression):
    source = Gauges({key(pvc="a"): every_minute(GB), key(pvc="b"): every_minute(GB)})

    with pytest.raises(SourceError, match=r"returned 2 series; wrap it in sum\(\.\.\.\)"):
        await PrometheusPeak("storage_gb", source, expression).measure(WINDOW)


async def test_a_window_without_samples_is_unmeasured_not_zero():
    stale = {key(pvc="a"): [(START_MS - 400_000, 5 * GB)]}
    measured = await PrometheusPeak("storage_gb", Gauges(stale), "sum(used_bytes)").measure(WINDOW)

    assert measured.metrics == {}
    assert measured.unmeasured == ("storage_gb",)
    assert measured.coverage["storage_gb"] == MetricCoverage(
        samples=0, expected=240, series=0, method="raw"
    )


async def test_an_expression_that_does_not_decompose_uses_the_grid_and_says_so():
    source = Gauges(grid=GridPeak(value=3 * GB, points=200, expected=240, series=1))
    with capture_logs() as logs:
        provider = PrometheusPeak("storage_gb", source, "sum(a) + sum(b)")
    measured = await provider.measure(WINDOW)

    assert [entry["event"] for entry in logs] == ["peak_method"]
    assert logs[0]["method"] == "grid"
    assert measured.metrics == {"storage_gb": 3.0}
    assert measured.coverage["storage_gb"] == MetricCoverage(
        samples=200, expected=240, series=1, method="grid"
    )
    assert source.asked == ["grid sum(a) + sum(b)"]


async def test_a_grid_without_points_is_unmeasured():
    source = Gauges(grid=GridPeak(value=None, points=0, expected=240, series=0))
    measured = await PrometheusPeak("storage_gb", source, "max(used_bytes)").measure(WINDOW)

    assert measured.unmeasured == ("storage_gb",)
    assert measured.coverage["storage_gb"].method == "grid"
