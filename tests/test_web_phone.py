"""The web page on a phone (headless Chromium at 390 x 844) and errors shown at once.

- At 390 px nothing is wider than the screen: ``document.documentElement.scrollWidth``
  is at most the viewport width, no element outside the scrolling operator table reaches
  past the right edge (so the plots are not cut), and the header is one short line.
- An error from a failed request appears while a slower request is still pending: the
  comparison request is held back (Playwright routing) until the analyze error is on
  the page.

Skipped without Chromium (/usr/bin/chromium: ``apt-get install -y chromium``) or
Playwright, like the browser test in test_web.py.
"""

from __future__ import annotations

import pytest

PHONE = {"width": 390, "height": 844}
HEADER_MAX_PX = 80        # one line of title and buttons (was 203 px: four wrapped lines)


@pytest.fixture(scope="module")
def browser(chromium, chromium_flags):
    exe, sync_api = chromium
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, headless=True, args=chromium_flags,
                               timeout=60_000)
        try:
            yield b
        finally:
            b.close()


def _ready(page):
    page.wait_for_selector("body[data-state=ready]", state="attached", timeout=60_000)


def test_phone_width_has_no_horizontal_overflow(browser, server, tmp_path):
    page = browser.new_page(viewport=PHONE)
    try:
        page.goto(server + "/")
        _ready(page)
        page.wait_for_selector("#compare-chart .heatmaplayer", state="attached", timeout=30_000)
        m = page.evaluate("""() => {
            const vw = window.innerWidth, wide = [];
            for (const el of document.querySelectorAll('body *')) {
                const b = el.getBoundingClientRect();
                if (b.width > 0 && b.right > vw + 1 && !el.closest('.tablewrap'))
                    wide.push(`${el.tagName}#${el.id}.${el.className} right ${Math.round(b.right)}`);
            }
            return {scroll: document.documentElement.scrollWidth, body: document.body.scrollWidth,
                    vw, header: document.querySelector('header').getBoundingClientRect().height,
                    wide: wide.slice(0, 10)};
        }""")
        assert m["vw"] == PHONE["width"]
        assert m["scroll"] <= m["vw"] and m["body"] <= m["vw"], m
        assert m["wide"] == [], m["wide"]
        assert m["header"] <= HEADER_MAX_PX, m["header"]
        # the charts use the width they have: each plot is at least 300 px wide on a 390 px screen
        for chart in ("#roofline-chart", "#compare-chart"):
            box = page.locator(f"{chart} .main-svg").first.bounding_box()
            assert 300 <= box["width"] and box["x"] + box["width"] <= PHONE["width"] + 1, (chart, box)
        # the operator table scrolls inside its panel instead of widening the page
        wrap = page.locator(".tablewrap").bounding_box()
        assert wrap["x"] + wrap["width"] <= PHONE["width"] + 1
        page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
    finally:
        page.close()


def test_error_shows_before_a_slow_request_finishes(browser, server):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    held = []
    try:
        page.goto(server + "/")
        _ready(page)
        # from now on the comparison request waits until the test lets it go
        page.route("**/api/compare", lambda route: held.append(route))
        page.fill("#batch", "0")
        page.press("#batch", "Tab")
        page.wait_for_selector("#error:not([hidden])", state="visible", timeout=15_000)
        assert page.inner_text("#error").startswith("batch:")
        assert len(held) == 1                                  # ... still pending
        assert page.get_attribute("body", "data-state") == "busy"
        assert page.get_attribute("body", "data-failed") == "analyze"
        held[0].continue_()
        page.wait_for_selector("body[data-state=error]", state="attached", timeout=30_000)
        assert page.inner_text("#error").startswith("batch:")
    finally:
        page.unroute("**/api/compare")
        page.close()


def test_comparison_error_shows_while_the_roofline_is_pending(browser, server):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    held = []
    try:
        page.goto(server + "/")
        _ready(page)
        page.route("**/api/roofline", lambda route: held.append(route))
        page.click("#controls details:has(#mesh_batch) summary")
        page.fill("#mesh_batch", "0:8")                  # batch axis must start at >= 1
        page.press("#mesh_batch", "Tab")
        page.wait_for_selector("#compare-summary:has-text('comparison: ')", timeout=15_000)
        assert page.inner_text("#compare-summary").startswith("comparison: batch")
        assert len(held) == 1 and page.get_attribute("body", "data-state") == "busy"
        held[0].continue_()
        _ready(page)                                      # analyze itself was fine
    finally:
        page.unroute("**/api/roofline")
        page.close()
