#!/usr/bin/env python3
"""The dashboard in a real browser: Debian's chromium driven by Playwright (PyPI).

Run against a daemon serving the demo config (.ci/run starts one):

    python tests/browser/dashboard.py --url http://127.0.0.1:18090 --out target/screenshots

It signs in with the demo's read token, waits for a gate alarm to arrive over the live
stream, signs in again with the operate token, reaches the alarm's Acknowledge button with
the keyboard and acknowledges it, checks the charts hold the demo's figures and the
"borrowed together" view its sessions, and checks the page at 200 % zoom (half the CSS
viewport at twice the pixel density) has no sideways scrolling. A screenshot of each view
goes to --out. Without playwright or chromium it skips (exit 0) unless
RFIDGW_REQUIRE_INTEROP=1, when it fails.
"""

import argparse
import json
import os
import shutil
import sys
import urllib.request

CHROMIUM = os.environ.get("RFIDGW_CHROMIUM", "/usr/bin/chromium")
READ_TOKEN = "demo-read-token"
OPERATE_TOKEN = "demo-operate-token"
# The demo's gate alarms every 8 s; a minute leaves room for a slow CI machine.
PATIENCE_MS = 60_000


def missing(what):
    if os.environ.get("RFIDGW_REQUIRE_INTEROP") == "1":
        print(f"FAIL: {what} (RFIDGW_REQUIRE_INTEROP=1)", file=sys.stderr)
        sys.exit(1)
    print(f"skipped: {what}")
    sys.exit(0)


try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:
    missing("the Python package playwright is not installed (pip install playwright)")
if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
    missing(f"no chromium at {CHROMIUM} (apt-get install chromium)")


def api(url, path, token):
    request = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def sign_in(page, token):
    page.fill("#token", token)
    page.keyboard.press("Enter")
    expect(page.locator("#view-live")).to_be_visible()


def no_sideways_scroll(page, what):
    width = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert width[0] <= width[1] + 1, f"{what}: the page scrolls sideways ({width[0]} > {width[1]} CSS px)"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the daemon's base URL")
    parser.add_argument("--out", default="target/screenshots", help="folder for the screenshots")
    args = parser.parse_args()
    url = args.url.rstrip("/")
    os.makedirs(args.out, exist_ok=True)
    shot = lambda page, name, **kw: page.screenshot(path=os.path.join(args.out, name), **kw)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        # A tablet at the circulation desk, landscape.
        context = browser.new_context(viewport={"width": 1180, "height": 820})
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))

        # 1. Sign in with the read token: the live view, no operator buttons.
        page.goto(url + "/")
        expect(page.locator("#signin")).to_be_visible()
        expect(page.locator("#token")).to_be_focused()
        shot(page, "signin.png")
        sign_in(page, READ_TOKEN)
        expect(page.locator("#whoami")).to_contain_text("(read)")
        expect(page.locator("#stream-state")).to_have_text("(live)", timeout=PATIENCE_MS)
        expect(page.locator("#devices tbody tr").first).to_be_visible()
        assert page.locator("button[data-alarm]").count() == 0, "a read token sees Acknowledge buttons"
        assert page.locator("button[data-gate]").count() == 0, "a read token sees Silence buttons"

        # 2. A gate alarm arrives live (no reload): an alarm row the page did not have.
        page.wait_for_function("() => window.__seen = [...document.querySelectorAll('[data-alarm-row]')].map(r => r.dataset.alarmRow)")
        page.wait_for_function(
            "() => [...document.querySelectorAll('[data-alarm-row]')].some(r => !window.__seen.includes(r.dataset.alarmRow))",
            timeout=PATIENCE_MS,
        )
        expect(page.locator("#events tbody tr", has_text="gate_alarm").first).to_be_visible()
        expect(page.locator("#alarms tbody tr").first).to_contain_text("secured")
        shot(page, "overview.png")  # the README's picture (docs/dashboard.png)
        shot(page, "live.png", full_page=True)

        # 3. The operate token: reach an Acknowledge button with Tab alone, press Enter.
        page.click("#signout")
        sign_in(page, OPERATE_TOKEN)
        expect(page.locator("#whoami")).to_contain_text("(operate)")
        expect(page.locator("button[data-alarm]").first).to_be_visible(timeout=PATIENCE_MS)
        expect(page.locator("button[data-gate]").first).to_be_visible()
        page.locator("body").focus()
        alarm = None
        for _ in range(80):
            page.keyboard.press("Tab")
            alarm = page.evaluate("document.activeElement && document.activeElement.dataset.alarm || null")
            if alarm:
                break
        assert alarm, "Tab never reached an Acknowledge button"
        # Every live event re-renders the table; the keyboard focus must stay on the button.
        page.evaluate("renderAlarms()")
        still = page.evaluate("document.activeElement && document.activeElement.dataset.alarm || null")
        assert still == alarm, f"a live re-render moved the focus from alarm {alarm} to {still}"
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline != "none", "the focused button shows no focus outline"
        shot(page, "live-focus.png")
        page.keyboard.press("Enter")
        row = page.locator(f'[data-alarm-row="{alarm}"]')
        expect(row).to_contain_text("acknowledged by", timeout=PATIENCE_MS)
        acked = [a for a in api(url, "/api/v1/alarms?limit=200", READ_TOKEN) if a["alarm_id"] == alarm]
        assert acked and acked[0]["acknowledged"], f"alarm {alarm} is not acknowledged in the API"

        # 4. The charts, with the demo's loans, returns, alarms, ILS times and bins.
        page.click("nav a[data-view=stats]")
        for chart in ["circulation", "ils", "bins"]:
            expect(page.locator(f"#chart-{chart} svg rect, #chart-{chart} svg path.line").first).to_be_attached(timeout=PATIENCE_MS)
        # The demo's first loans come some seconds into its run: ask again until they show.
        for _ in range(PATIENCE_MS // 1000):
            label = page.locator("#chart-circulation svg").get_attribute("aria-label")
            if "loans 0" not in label and "alarms 0" not in label:
                break
            page.wait_for_timeout(1000)
            page.click("#stats-form button")
        assert "loans 0" not in label and "alarms 0" not in label, f"no demo figures: {label}"
        expect(page.locator("#chart-bins svg")).to_contain_text("Shelving")
        shot(page, "stats.png", full_page=True)

        # 5. Borrowed together: the demo's patron borrows I0001, I0002 and the set I0003.
        page.click("nav a[data-view=together]")
        page.fill("#together-item", "I0001")
        page.click("#together-form button")
        expect(page.locator("#together tbody tr").first).to_be_visible(timeout=PATIENCE_MS)
        expect(page.locator("#together")).to_contain_text("I0002")
        shot(page, "together.png", full_page=True)
        assert not errors, f"the page logged errors: {errors}"
        context.close()

        # 6. 200 % zoom: half the CSS viewport, twice the pixel density; one column, no
        # sideways scrolling, everything still reachable.
        zoomed = browser.new_context(viewport={"width": 590, "height": 410}, device_scale_factor=2)
        page = zoomed.new_page()
        page.goto(url + "/")
        sign_in(page, READ_TOKEN)
        expect(page.locator("#alarms tbody tr").first).to_be_visible(timeout=PATIENCE_MS)
        no_sideways_scroll(page, "live view at 200 %")
        shot(page, "zoom200-live.png", full_page=True)
        page.click("nav a[data-view=stats]")
        expect(page.locator("#chart-circulation svg")).to_be_visible(timeout=PATIENCE_MS)
        no_sideways_scroll(page, "statistics at 200 %")
        shot(page, "zoom200-stats.png", full_page=True)
        zoomed.close()
        browser.close()

    print(f"dashboard: all checks passed; screenshots in {args.out}")


if __name__ == "__main__":
    main()
