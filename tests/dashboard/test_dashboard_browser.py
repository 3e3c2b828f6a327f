"""The dashboard in a real browser (Debian's Chromium driven by Playwright) against the real process and broker:
log in, watch an alert arrive live from a real ECG's report, open it, check the plot and the evidence, adjudicate,
see the audit entry, log out; the alert page printed to PDF on A4 landscape with the grid measured at 1 mm +/- 2 %;
axe-core on the queue and alert pages; screenshots for the README (docs/screenshots) and the test artefacts."""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.dashboard.conftest import ARTEFACTS, CHROMIUM, CHROMIUM_ARGS, ROOT
from tests.dashboard.grid_measure import measure_pdf, page_size_pt

pytestmark = [pytest.mark.kafka, pytest.mark.browser]

SCREENSHOTS = ROOT / "docs" / "screenshots"
A4_LANDSCAPE_PT = (841.89, 595.28)
LIVE_GOAL_S = 1.0


def _axe_path() -> Path:
    from stream.config import ToolSettings

    for base in (ToolSettings().cache_dir, ROOT / ".cache"):
        path = base / "npm" / "node_modules" / "axe-core" / "axe.min.js"
        if path.exists():
            return path
    raise FileNotFoundError("axe-core is not installed: scripts/setup.sh test (npm install axe-core into .cache/npm)")


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        raise FileNotFoundError(f"{CHROMIUM} is missing: scripts/setup.sh test installs Debian's chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def _login(page: Page, url: str, name: str, password: str) -> None:
    page.goto(url + "/")
    assert "/login" in page.url  # an anonymous visitor is sent to the login form
    page.fill("#username", name)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('Alert queue')")


def _wait_row(page: Page, dashboard, report_id: str, timeout_s: float):
    row = page.locator(f'tr[data-id="{report_id}"]')
    try:
        row.wait_for(timeout=timeout_s * 1000)
    except PlaywrightTimeout:
        raise AssertionError(f"alert not shown after {timeout_s} s; live status {page.locator('#live').inner_text()!r}"
                             f"; API {page.request.get(dashboard.url + '/api/alerts').text()[:500]}; dashboard log: "
                             f"{dashboard.log_text()[-2000:]}") from None
    return row


def _shot(page: Page, name: str) -> None:
    """Screenshots are test artefacts; the README's copies in docs/screenshots are refreshed only on request
    (UPDATE_SCREENSHOTS=1), so a test run leaves the checkout as it was."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / name), full_page=False)
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(ARTEFACTS / name, SCREENSHOTS / name)


def _serious_axe(page: Page, axe: Path) -> list[dict]:
    page.add_script_tag(path=str(axe))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"], "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in result["violations"] if v["impact"] in ("serious", "critical")]


def test_review_an_alert_in_the_browser(dashboard, serial_pairs, other_pairs, browser, tmp_path):
    first, second = serial_pairs
    csp_errors: list[str] = []
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    page = context.new_page()
    page.on("console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None)
    _login(page, dashboard.url, "admin", dashboard.passwords["admin"])
    page.wait_for_selector("#live:has-text('Live updates: on')")
    assert page.locator("tr.alert-row").count() == 0
    dashboard.publish(*other_pairs)
    for rid in (p.report_id for p in other_pairs):  # (no wait_for_function: the page's CSP forbids eval)
        _wait_row(page, dashboard, rid, 30)

    # The prior (no TWI: not an alert) and then the new ECG's report and analysis, as the worker publishes them.
    dashboard.publish(first)
    sending = time.monotonic()
    dashboard.publish(second)  # returns once the broker has both messages (acks=all)
    published = time.monotonic()
    row = _wait_row(page, dashboard, second.report_id, 10)
    seen_s = time.monotonic() - published
    (ARTEFACTS / "live-latency.json").parent.mkdir(parents=True, exist_ok=True)
    (ARTEFACTS / "live-latency.json").write_text(json.dumps({"on_topics_to_visible_s": round(seen_s, 3),
                                                             "publishing_s": round(published - sending, 3)}))
    assert seen_s < LIVE_GOAL_S, f"alert visible {seen_s:.2f} s after it reached the topics (goal 1 s)"
    assert page.locator("tr.alert-row").count() == len(other_pairs) + 1  # the no-TWI prior is not queued
    assert page.locator("tr.alert-row").first.get_attribute("data-id") == other_pairs[0].report_id  # ischaemic first
    assert "Secondary: LVH with strain" in row.inner_text() and "New" in row.inner_text()
    # The analysis message (location, novelty) may land a moment after the report: the row updates live.
    deadline = time.monotonic() + 10
    while "CCU" not in row.inner_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "CCU" in row.inner_text() and "\tnew\t" in row.inner_text(), row.inner_text()
    _shot(page, "queue.png")

    # The alert page: the ECG and its prior on the grid, T-wave marks, evidence, checks, measures.
    row.locator("a.open").click()
    page.wait_for_selector("h1:has-text('Secondary: LVH with strain')")
    assert page.locator("#research-banner").is_visible()
    ecgs = page.locator("svg.ecg")
    assert ecgs.count() == 2
    current = page.locator("#figure-current svg.ecg")
    assert current.get_attribute("width") == "260mm" and current.get_attribute("viewBox") == "0 0 260 140"
    assert int(current.get_attribute("data-t-marks")) > 10
    assert page.locator("#figure-current polyline.ecg-trace").count() == 13  # 12 leads + the rhythm strip
    assert page.locator("#figure-current text.lead-twi").count() >= 2  # I and aVL are in the TWI group
    assert page.locator("#figure-prior polyline.ecg-trace").count() == 13
    assert page.locator("#evidence li").count() >= 3
    assert "TWI high-lateral" in page.locator("#evidence").inner_text()
    assert page.locator("#secondary li.present").count() >= 1
    assert page.locator("#measures tbody tr").count() == 12
    assert "ptbxl-641" in page.locator("#mrn").inner_text()
    _shot(page, "alert.png")

    # Print: A4 landscape, the grid measured on the rendered page.
    pdf = ARTEFACTS / "alert.pdf"
    page.emulate_media(media="print")
    page.pdf(path=str(pdf), format="A4", landscape=True, print_background=True, prefer_css_page_size=True)
    page.emulate_media(media="screen")
    w, h = page_size_pt(pdf)
    assert abs(w - A4_LANDSCAPE_PT[0]) < 1 and abs(h - A4_LANDSCAPE_PT[1]) < 1, (w, h)
    grid = measure_pdf(pdf, tmp_path)
    assert grid is not None, "no ECG grid found on the printed pages"
    (ARTEFACTS / "print-grid.json").write_text(json.dumps(grid.__dict__))
    assert abs(grid.minor_mm - 1.0) <= 0.02, grid
    assert abs(grid.major_mm - 5.0) <= 0.10, grid

    # Adjudicate, then see it in the history and the audit trail.
    page.check("#verdict-agree-secondary")
    page.select_option("#cause", "lvh-strain")
    page.fill("#note", "strain pattern with voltage criteria")
    page.click("#adjudicate")
    page.wait_for_selector("#action-notice:has-text('Adjudication saved')")
    assert "Adjudicated" in page.locator("#state").inner_text()
    assert "agree-secondary" in page.locator("#history").inner_text()
    page.click("nav >> text=Audit trail")
    entries = page.locator("#audit tbody tr").all_inner_texts()
    adjudications = [e for e in entries if "\tadjudicate" in e and second.report_id in e]
    assert adjudications and "admin" in adjudications[0] and "127.0.0.1" in adjudications[0], entries[:5]
    page.click("#logout")
    page.wait_for_url("**/login")
    page.goto(dashboard.url + f"/alerts/{second.report_id}")
    assert "/login" in page.url
    assert not csp_errors, csp_errors
    context.close()


def test_queue_and_alert_pages_have_no_serious_accessibility_violations(dashboard, serial_pairs, browser):
    first, second = serial_pairs
    dashboard.publish(first, second)
    axe = _axe_path()
    # axe-core is injected as a script tag: this context ignores the page's CSP (only here).
    context = browser.new_context(bypass_csp=True, viewport={"width": 1400, "height": 900})
    page = context.new_page()
    _login(page, dashboard.url, "rev1", dashboard.passwords["rev1"])
    _wait_row(page, dashboard, second.report_id, 30)
    problems = {"queue": _serious_axe(page, axe)}
    page.goto(dashboard.url + f"/alerts/{second.report_id}")
    problems["alert"] = _serious_axe(page, axe)
    page.goto(dashboard.url + "/login")
    (ARTEFACTS / "axe.json").write_text(json.dumps(problems, indent=1))
    assert problems == {"queue": [], "alert": []}, problems
    context.close()
