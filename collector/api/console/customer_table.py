"""The customers table: the customers view filtered and sorted by query parameters.

Sorting and filtering happen on the server, so the table works with JavaScript off and a
sorted, filtered view is a link an operator can share. Every sort is total (ties fall back to
the customer id), so the same query always lists customers in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from collector.services.customers import CustomerView

RECONCILE_ORDER = {"drifting": 0, "settling": 1, "unknown": 2, "in_sync": 3}
"""Worst first when sorting by reconcile state ascending."""
_EPOCH = datetime.min.isoformat()


def _last_report(view: CustomerView) -> str:
    return max((i.last_report_at.isoformat() for i in view.instances), default=_EPOCH)


SORT_KEYS: dict[str, Callable[[CustomerView], Any]] = {
    "customer": lambda v: v.customer_id,
    "reconcile": lambda v: RECONCILE_ORDER.get(v.reconcile, len(RECONCILE_ORDER)),
    "pending": lambda v: v.pending,
    "dead": lambda v: v.dead,
    "oldest_unbilled": lambda v: v.oldest_unbilled_seconds or 0.0,
    "instances": lambda v: len(v.instances),
    "last_report": _last_report,
}
LARGEST_FIRST = frozenset({"pending", "dead", "oldest_unbilled", "instances", "last_report"})
"""Columns a first click sorts descending: the biggest queue, the newest report first."""
SORT_PATTERN = "^(" + "|".join(SORT_KEYS) + ")$"
RECONCILE_FILTERS = ("in_sync", "drifting", "settling", "unknown")
LINK_FILTERS = ("linked", "unlinked")


@dataclass(frozen=True)
class TableQuery:
    """What the table shows: a filter for each column that has one, and one sort."""

    search: str = ""
    link: str | None = None
    reconcile: str | None = None
    silent: bool = False
    unbillable: bool = False
    sort: str = "customer"
    descending: bool = False

    def keeps(self, view: CustomerView) -> bool:
        return (
            (not self.search or self.search.lower() in view.customer_id.lower())
            and (self.link is None or (self.link == "linked") == view.linked)
            and (self.reconcile is None or view.reconcile == self.reconcile)
            and (not self.silent or view.silent)
            and (not self.unbillable or view.unbillable is not None)
        )

    def params(self, **changes: Any) -> dict[str, str]:
        """This query as URL parameters, with ``changes``; defaults are left out."""
        values = {
            "q": self.search,
            "link": self.link or "",
            "reconcile": self.reconcile or "",
            "silent": "true" if self.silent else "",
            "unbillable": "true" if self.unbillable else "",
            "sort": self.sort if self.sort != "customer" else "",
            "order": "desc" if self.descending else "",
        }
        values.update({k: str(v) for k, v in changes.items()})
        return {k: v for k, v in values.items() if v}

    def sort_params(self, column: str) -> dict[str, str]:
        """The parameters of a column header's link: sort by it, flipping the order if it is
        the current sort."""
        descending = not self.descending if column == self.sort else column in LARGEST_FIRST
        return self.params(sort=column, order="desc" if descending else "")


def table(views: Sequence[CustomerView], query: TableQuery) -> list[CustomerView]:
    """The views ``query`` keeps, in its order."""
    key = SORT_KEYS[query.sort]
    kept = sorted((v for v in views if query.keeps(v)), key=lambda v: v.customer_id)
    return sorted(kept, key=key, reverse=query.descending)
