"""The console in a real headless chromium, on the sandbox scenario (issue 13).

Each page is opened after signing in, its figures are read off the page and compared with what
the API answers at that moment, and a screenshot of it is saved. A viewer sees no retry button
and is refused a forged retry; an editor retries a dead letter with JavaScript off; a key limited
to one customer sees that customer only; htmx refreshes the overview's figures in place.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from collector.api.console.filters import money, quantity
from tests.integration.console.conftest import LAPTOP, PHONE, sign_in
from tests.integration.console.scenario import (
    ACME,
    BLUEFIN,
    CORAL,
    DELTA,
    HOUR,
    Scene,
    wait_until,
)
from tests.support.credentials import bearer, issue_token


def new_page(chromium: Any, *, javascript: bool = True, viewport: dict[str, int] = LAPTOP) -> Any:
    context = chromium.new_context(java_script_enabled=javascript, viewport=viewport)
    page = context.new_page()
    page.problems = []
    page.on(
        "console",
        lambda message: page.problems.append(message.text) if message.type == "error" else None,
    )
    page.on("pageerror", lambda error: page.problems.append(str(error)))
    return page


def figure(page: Any, name: str) -> str:
    return str(page.locator(f"[data-figure='{name}']").inner_text()).strip()


def cells(page: Any, table: str, column: str) -> list[str]:
    found = page.locator(f"table[data-table='{table}'] tbody [data-col='{column}']")
    return [text.strip() for text in found.all_inner_texts()]


def shoot(page: Any, directory: Path, name: str) -> None:
    page.screenshot(path=str(directory / f"{name}.png"), full_page=True)


def test_every_page_shows_the_figures_the_api_answers(
    scene: Scene, chromium: Any, screenshots: Path
) -> None:
    page = new_page(chromium)
    sign_in(page, scene, "viewer")
    customers = scene.api("/api/customers")
    status = scene.api("/api/forwarding/status")
    linked = Counter(c["reconcile"] for c in customers if c["linked"])
    assert linked["drifting"] == 1
    for state in ("in_sync", "settling", "drifting", "unknown"):
        assert figure(page, state) == str(linked[state]), state
    assert figure(page, "unlinked") == str(sum(1 for c in customers if not c["linked"]))
    assert figure(page, "queue-pending") == str(status["forwards"].get("pending", 0))
    assert figure(page, "queue-batched") == str(status["forwards"].get("batched", 0))
    assert figure(page, "queue-dead") == str(status["forwards"]["dead"])
    assert figure(page, "calls-saved") == str(status["calls_saved"])
    silent = scene.api("/api/customers", silent="true")
    silent_instances = {i["instance_id"] for c in silent for i in c["instances"] if i["silent"]}
    assert silent_instances == {"plant-south", "clinic-a"}
    listed = page.locator("table[data-table='silent'] tbody tr td:nth-child(2)").all_inner_texts()
    assert set(listed) == silent_instances
    assert page.locator("table[data-table='ageing'] tbody tr").count() == len(status["ageing"])
    assert CORAL in page.locator("table[data-table='ageing']").inner_text()
    drifting = page.locator("table[data-table='drifting'] tbody tr")
    assert drifting.count() == 1
    assert DELTA in drifting.inner_text()
    shoot(page, screenshots, "overview")

    page.click("nav >> text=Customers")
    rows = page.locator("table[data-table='customers'] tbody tr")
    assert [rows.nth(i).get_attribute("data-customer") for i in range(rows.count())] == [
        c["customer_id"] for c in customers
    ]
    assert cells(page, "customers", "dead") == [str(c["dead"]) for c in customers]
    assert cells(page, "customers", "pending") == [str(c["pending"]) for c in customers]
    assert cells(page, "customers", "reconcile") == [c["reconcile"] for c in customers]
    shoot(page, screenshots, "customers")
    page.click("th >> text=dead")
    assert rows.first.get_attribute("data-customer") == BLUEFIN
    page.select_option("select[name=reconcile]", "drifting")
    page.click("form.filters button")
    assert [rows.nth(i).get_attribute("data-customer") for i in range(rows.count())] == [DELTA]

    page.goto(f"{scene.url}/console/customers/{BLUEFIN}")
    reconcile = scene.api(f"/api/usage/{BLUEFIN}/reconcile")
    for metric in reconcile["metrics"]:
        row = page.locator(f"table[data-table='comparison'] tr[data-metric='{metric['metric']}']")
        assert row.locator("[data-col='collector']").inner_text() == quantity(
            metric["collector_billable"]
        )
        stripe_value = metric["stripe_value"]
        assert row.locator("[data-col='stripe']").inner_text() == quantity(
            None if stripe_value is None else Decimal(stripe_value)
        )
    history = scene.api(f"/api/usage/{BLUEFIN}", limit=1000)["reports"]
    storage = page.locator("[data-chart='storage_gb'] rect.window")
    assert storage.count() == len(history)
    assert page.locator("[data-chart='storage_gb'] rect.window.partial").count() == 1
    assert page.locator("[data-chart='mqtt_messages'] rect.window.unmeasured").count() == 1
    assert page.locator("[data-chart='mqtt_messages'] rect.window.measured").count() == (
        len(history) - 1
    )
    batches = scene.api("/api/forwarding/batches", customer_id=BLUEFIN, limit=20)
    assert cells(page, "batches", "identifier") == [b["identifier"] for b in batches]
    invoice = scene.api(f"/api/usage/{BLUEFIN}/invoice-preview")
    assert page.locator("[data-col='invoice-total']").inner_text() == money(
        invoice["total"], invoice["currency"]
    )
    shoot(page, screenshots, "customer")
    panel = page.locator("section.panel", has=page.locator("h2", has_text="Usage over time"))
    panel.screenshot(path=str(screenshots / "customer-usage.png"))

    page.goto(f"{scene.url}/console/customers/{DELTA}")
    storage_row = page.locator("table[data-table='comparison'] tr[data-metric='storage_gb']")
    assert storage_row.get_attribute("class") == "drifting"
    assert storage_row.locator("[data-col='difference']").inner_text() == "-1"
    shoot(page, screenshots, "customer-drifting")
    panel = page.locator("section.panel", has=page.locator("h2", has_text="beside Stripe"))
    panel.screenshot(path=str(screenshots / "customer-drift.png"))

    page.click("nav >> text=Forwarding")
    for state, count in status["batches"].items():
        tab = page.locator(f".tabs a[data-count='{state}'] strong")
        assert tab.inner_text() == str(count), state
    dead = scene.api("/api/forwarding/batches", state="dead")
    assert len(dead) == 1
    listed = page.locator("table[data-table='batches'] tbody tr")
    assert [int(listed.nth(i).get_attribute("data-batch")) for i in range(listed.count())] == [
        b["id"] for b in dead
    ]
    assert dead[0]["last_error"] in listed.first.locator("[data-col='message']").inner_text()
    assert page.locator("button[data-retry]").count() == 0  # a viewer gets no retry button
    shoot(page, screenshots, "forwarding")
    assert page.problems == []


def test_the_pages_are_readable_on_a_phone(scene: Scene, chromium: Any, screenshots: Path) -> None:
    page = new_page(chromium, viewport=PHONE)
    sign_in(page, scene, "viewer")
    for path, name in (
        ("/console/", "phone-overview"),
        (f"/console/customers/{BLUEFIN}", "phone-customer"),
        ("/console/forwarding", "phone-forwarding"),
    ):
        page.goto(f"{scene.url}{path}")
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} is {overflow}px wider than the phone"
        shoot(page, screenshots, name)
    assert page.problems == []


def test_a_scoped_key_sees_only_its_customer(
    scene: Scene, chromium: Any, screenshots: Path
) -> None:
    page = new_page(chromium)
    sign_in(page, scene, "scoped")
    assert figure(page, "unlinked") == "0"
    assert figure(page, "drifting") == "0"
    assert figure(page, "in_sync") == "1"
    assert page.locator("table[data-table='ageing']").count() == 0
    shoot(page, screenshots, "scoped-overview")
    page.goto(f"{scene.url}/console/customers")
    rows = page.locator("table[data-table='customers'] tbody tr")
    assert [rows.nth(i).get_attribute("data-customer") for i in range(rows.count())] == [ACME]
    for other in (BLUEFIN, CORAL, DELTA):
        response = page.goto(f"{scene.url}/console/customers/{other}")
        assert response.status == 403, other
    page.goto(f"{scene.url}/console/forwarding?state=sent")
    owners = page.locator("table[data-table='batches'] tbody tr td.id a").all_inner_texts()
    assert owners
    assert set(owners) == {ACME}
    page.goto(f"{scene.url}/console/forwarding?state=dead")
    assert page.locator("[data-empty='batches']").count() == 1


def test_a_viewer_cannot_retry_even_with_a_forged_form(scene: Scene, chromium: Any) -> None:
    page = new_page(chromium)
    sign_in(page, scene, "viewer", "/console/forwarding")
    (dead,) = scene.api("/api/forwarding/batches", state="dead")
    assert page.locator("button[data-retry]").count() == 0
    token = page.locator("header form input[name=csrf]").get_attribute("value")
    forged = page.request.post(
        f"{scene.url}/console/forwarding/batches/{dead['id']}/retry",
        form={"csrf": token},
        max_redirects=0,
    )
    assert forged.status == 403
    assert "needs the editor role" in forged.text()
    assert scene.api("/api/forwarding/batches", state="dead") == [dead]


def test_an_editor_retries_a_dead_letter_with_javascript_off(
    fresh_scene: Scene, chromium: Any, screenshots: Path
) -> None:
    scene = fresh_scene
    page = new_page(chromium, javascript=False)
    sign_in(page, scene, "editor", "/console/forwarding")
    (dead,) = scene.api("/api/forwarding/batches", state="dead")
    assert "meter" in dead["last_error"]
    scene.reactivate_dead_meter()
    page.click(f"button[data-retry='{dead['id']}']")
    page.wait_for_url(f"{scene.url}/console/forwarding?state=dead&retried={dead['id']}")
    assert page.locator("[data-flash='retried']").count() == 1
    shoot(page, screenshots, "forwarding-retried")

    def sent() -> bool:
        batches = scene.api("/api/forwarding/batches", customer_id=BLUEFIN, limit=100)
        return any(b["id"] == dead["id"] and b["state"] == "sent" for b in batches)

    wait_until(sent, "the retried batch to reach Stripe")
    assert scene.api("/api/forwarding/batches", state="dead") == []
    page.goto(f"{scene.url}/console/customers/{BLUEFIN}")
    row = page.locator(f"table[data-table='batches'] tr[data-batch='{dead['id']}']")
    assert "sent" in row.inner_text()
    assert page.problems == []


def test_htmx_refreshes_the_overview_in_place(scene: Scene, chromium: Any) -> None:
    from playwright.sync_api import expect

    page = new_page(chromium)
    sign_in(page, scene, "admin")
    before = int(figure(page, "queue-pending"))
    marker = page.evaluate("document.querySelector('main h1').dataset.kept = 'yes'")
    assert marker == "yes"
    latest = scene.api(f"/api/usage/{CORAL}/latest")
    token = issue_token(scene.collector.database_url, CORAL).secret
    end = latest["window_end"]
    report = {
        "customer_id": CORAL,
        "instance_id": "clinic-b",
        "window_start": end.replace("Z", "+00:00"),
        "window_end": _plus(end, HOUR),
        "metrics": {"devices": 2},
    }
    created = httpx.post(f"{scene.url}/api/usage/report", json=report, headers=bearer(token))
    assert created.status_code == 201, created.text
    expect(page.locator("[data-figure='queue-pending']")).to_have_text(str(before + 1))
    # The figures were swapped in place: the page around them was not reloaded.
    assert page.evaluate("document.querySelector('main h1').dataset.kept") == "yes"
    assert page.problems == []


def _plus(iso: str, delta: Any) -> str:
    from datetime import datetime

    return (datetime.fromisoformat(iso.replace("Z", "+00:00")) + delta).isoformat()
