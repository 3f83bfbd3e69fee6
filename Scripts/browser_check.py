#!/usr/bin/env python3
"""Loads the dashboard in headless Chromium (Debian's chromium + chromium-driver, driven by Selenium)
against a running `calltap serve`, on a desktop window (1400×900) and on a phone (390×844, mobile
emulation). The database holds Samples/agent-demo.pcap and Scripts/lib/odd_hosts.py's calls (a
10,000-character host, a host with U+202E, calls 2 h, 33 min and 5 min before the demo). Fails on:
a JavaScript console error; the page wider than the window (sideways scroll), with the whole range,
a zoomed range and a call's detail open; a control or format character shown raw; the range picker
(1 h, 15 min, custom) not narrowing both the timeline and the list, or the back button not restoring
the range; the session picker not narrowing them or not in the address; the list's host and outcome
filters not narrowing the list; dragging across the timeline not zooming in (desktop); clicking a
failed call not opening its detail (every field, the timing waterfall, the attribution), in the list or, zoomed in where each
call is drawn, on the timeline. Saves a screenshot of each.
Usage: browser_check.py URL DESKTOP.png PHONE.png"""
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver import ActionChains
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

base, desktop_shot, phone_shot = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
ALL_CALLS = 21           # 18 in the demo, 3 from odd_hosts.py
IN_1H, IN_15M = 20, 19   # the newest call is the demo's last: 33 min and 5 min before it are in, 2 h is not
DEMO_WINDOW = ("2026-11-25T16:43:00", "2026-11-25T16:44:00")  # UTC, the demo's 18 calls only


def driver_for(phone):
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900"):
        opts.add_argument(a)
    if phone:
        opts.add_experimental_option("mobileEmulation", {
            "deviceMetrics": {"width": 390, "height": 844, "pixelRatio": 3.0, "touch": True},
            "userAgent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36"})
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def check(phone, shot):
    name = "phone" if phone else "desktop"
    problems = []
    d = driver_for(phone)

    def js(script, *args):
        return d.execute_script(script, *args)

    def wait(what, predicate, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if predicate():
                    return True
            except Exception:  # the page is being re-rendered
                pass
            time.sleep(0.1)
        problems.append(f"{name}: {what}")
        return False

    def timeline_count():
        # The calls the timeline draws: the sum of its stacked segments, or its calls drawn one by one.
        return js("return [...document.querySelectorAll('#plot rect.seg')].reduce((n, r) => n + Number(r.dataset.count), 0)"
                  " + document.querySelectorAll('#plot rect.call').length")

    def list_count():
        return len(d.find_elements(By.CSS_SELECTOR, "#calls tbody tr"))

    def settled(n_timeline, n_list):
        return lambda: timeline_count() == n_timeline and list_count() == n_list

    def no_overflow(when):
        sw, iw = js("return [document.scrollingElement.scrollWidth, window.innerWidth]")
        if sw > iw:
            problems.append(f"{name}: the page is {sw} px wide in a {iw} px window ({when})")

    def no_raw_controls(when):
        raw = js(r"return /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F\u200B-\u200F\u202A-\u202E\u2066-\u2069]/u.test(document.body.innerText)")
        if raw:
            problems.append(f"{name}: a control or format character is shown raw ({when})")

    def retry(action):
        # The page draws its parts again as data arrives: an element found a moment before may have been
        # replaced, so the action is tried again on the new one.
        for _ in range(10):
            try:
                return action()
            except StaleElementReferenceException:
                time.sleep(0.2)
        return action()

    def click_range(label):
        retry(lambda: d.find_element(By.CSS_SELECTOR, f"#ranges button[data-range='{label}']").click())

    try:
        d.get(base + "/")
        wait("the whole range shows every call on the timeline and in the list", settled(ALL_CALLS, ALL_CALLS))
        no_overflow("whole range, 10,000-character host")
        no_raw_controls("whole range")
        if not js(r"return document.body.innerText.includes('\\u{202E}')"):
            problems.append(f"{name}: the U+202E host is not shown as \\u{{202E}}")
        long_cells = js("return [...document.querySelectorAll('bdi.t')].filter(b => b.title.length >= 2000).length")
        if not long_cells:
            problems.append(f"{name}: the 10,000-character host has no title with its text")
        if not d.find_elements(By.CSS_SELECTOR, "#summary tbody tr"):
            problems.append(f"{name}: the per-host summary is empty")
        failed_segments = d.find_elements(By.CSS_SELECTOR, "#plot rect.seg:not([data-class='ok'])")
        if not failed_segments:
            problems.append(f"{name}: no failure is marked on the timeline")

        # The range picker narrows the timeline and the list, and the address follows it.
        click_range("1h")
        wait(f"1 h: {IN_1H} calls on the timeline and in the list", settled(IN_1H, IN_1H))
        if "range=1h" not in d.current_url:
            problems.append(f"{name}: 1 h is not in the address ({d.current_url})")
        click_range("15m")
        wait(f"15 min: {IN_15M} calls on the timeline and in the list", settled(IN_15M, IN_15M))
        d.back()
        wait("back restores 1 h", lambda: "range=1h" in d.current_url and settled(IN_1H, IN_1H)()
             and d.find_element(By.CSS_SELECTOR, "#ranges button.on").get_attribute("data-range") == "1h")
        click_range("custom")
        js("document.getElementById('from').value = arguments[0]; document.getElementById('to').value = arguments[1];"
           " document.getElementById('apply').click();", *DEMO_WINDOW)
        wait("custom range: the demo's 18 calls", settled(18, 18))
        if "since=2026-11-25T16%3A43%3A00" not in d.current_url:
            problems.append(f"{name}: the custom range is not in the address ({d.current_url})")
        no_overflow("custom range")

        # Zoomed into the demo's second, each call is drawn; clicking a failed one opens its detail.
        d.get(base + "/?since=2026-11-25T16:43:29.000Z&until=2026-11-25T16:43:30.000Z")
        wait("the demo's second: 18 calls", settled(18, 18))
        if js("return document.querySelector('#plot svg').dataset.mode") != "calls":
            problems.append(f"{name}: 18 calls are not drawn one by one")
        else:
            retry(lambda: d.find_element(By.CSS_SELECTOR, "#plot rect.call:not([data-outcome='ok'])").click())
            wait("clicking a failed call on the timeline opens its detail", lambda: d.find_element(By.ID, "detail").is_displayed())
            retry(lambda: d.find_element(By.CSS_SELECTOR, "#detailCard button").click())
            wait("the detail closes", lambda: not d.find_element(By.ID, "detail").is_displayed())

        # Dragging across the middle of the timeline zooms into that part.
        click_range("custom")
        js("document.getElementById('from').value = arguments[0]; document.getElementById('to').value = arguments[1];"
           " document.getElementById('apply').click();", *DEMO_WINDOW)
        wait("custom range again", settled(18, 18))
        if not phone:
            before = timeline_count()
            # The timeline is drawn again when its data arrives: an element found just before may be
            # replaced, so the drag is tried again on the new one.
            for attempt in range(5):
                try:
                    plot = d.find_element(By.CSS_SELECTOR, "#plot svg")
                    w = plot.size["width"]
                    ActionChains(d).move_to_element_with_offset(plot, int(-w * 0.45), 0).click_and_hold() \
                        .move_by_offset(int(w * 0.9), 0).release().perform()
                    break
                except StaleElementReferenceException:
                    time.sleep(0.2)
            wait("dragging zooms in (the range changes)", lambda: "since=2026-11-25T16%3A43%3A00.000Z" not in d.current_url)
            wait("the zoomed timeline and list agree", lambda: 0 < timeline_count() <= before and timeline_count() == list_count())

        # A reload restores the range from the address.
        url = d.current_url
        d.get(url)
        wait("a reload restores the range", lambda: d.find_element(By.CSS_SELECTOR, "#ranges button.on").get_attribute("data-range") == "custom"
             and timeline_count() == list_count() > 0)

        # The session picker narrows everything too, and the session is in the address.
        d.get(base + "/?session=odd-agent")
        wait("session=odd-agent in the address: its 3 calls", lambda: settled(3, 3)()
             and d.find_element(By.ID, "session").get_attribute("value") == "odd-agent")
        retry(lambda: Select(d.find_element(By.ID, "session")).select_by_value("demo-agent"))
        wait("picking demo-agent: its 18 calls, and the address says so",
             lambda: settled(18, 18)() and "session=demo-agent" in d.current_url)

        # DNS-only hosts (a name looked up and never connected to) are hidden on request, in the address too.
        summary_text = lambda: js("return document.querySelector('#summary tbody').innerText")
        d.get(base + "/")
        wait("the summary names the host only looked up", lambda: "typo-api.agent.test" in summary_text())
        retry(lambda: d.find_element(By.ID, "hideDNS").click())
        wait("hide DNS-only hosts: that host is gone, the others stay, the address says so",
             lambda: "typo-api.agent.test" not in summary_text() and "api.agent.test" in summary_text() and "dns=hide" in d.current_url)

        # The list's filters narrow the list alone.
        d.get(base + "/")
        wait("the whole range again", settled(ALL_CALLS, ALL_CALLS))
        retry(lambda: Select(d.find_element(By.ID, "host")).select_by_value("secure.agent.test"))
        wait("host filter: 2 calls listed, the timeline unchanged", settled(ALL_CALLS, 2))
        retry(lambda: Select(d.find_element(By.ID, "host")).select_by_value(""))
        retry(lambda: Select(d.find_element(By.ID, "outcome")).select_by_value("failed"))
        wait("outcome filter: the 10 failed calls listed", lambda: settled(ALL_CALLS, 10)() and "outcome=failed" in d.current_url)

        # Failures first, then a failed call's detail.
        d.get(base + "/?failures=first")
        wait("failures first lists every call", settled(ALL_CALLS, ALL_CALLS))
        outcomes = [r.get_attribute("data-outcome") for r in d.find_elements(By.CSS_SELECTOR, "#calls tbody tr")]
        failed = [o for o in outcomes if o != "ok"]
        if not failed or outcomes[:len(failed)] != failed:
            problems.append(f"{name}: failures first does not list the failures first ({outcomes})")
        retry(lambda: d.find_element(By.CSS_SELECTOR, "#calls tbody tr:not([data-outcome='ok'])").click())
        wait("clicking a failed call opens its detail", lambda: d.find_element(By.ID, "detail").is_displayed())
        detail = d.find_element(By.ID, "detail").text
        for needed in ("Every field", "Timing", "attribution", "outcome", "latency_ms"):
            if needed not in detail:
                problems.append(f"{name}: the detail lacks {needed!r}")
        no_overflow("a failed call's detail")
        no_raw_controls("detail")
        # The long host's call, opened too.
        js("""const rows = [...document.querySelectorAll('#calls tbody tr')];
              const r = rows.find(r => r.querySelector('bdi.t').title.length >= 2000); if (r) r.click();""")
        no_overflow("the 10,000-character host's detail")
        retry(lambda: d.find_element(By.CSS_SELECTOR, "#detailCard button").click())
        wait("the detail closes", lambda: not d.find_element(By.ID, "detail").is_displayed())

        for entry in d.get_log("browser"):
            if entry.get("level") == "SEVERE":
                problems.append(f"{name}: console: " + entry.get("message", ""))

        # The screenshot: the demo zoomed in on a desktop; everything, failures first, on a phone.
        if phone:
            d.get(base + "/?failures=first")
            wait("phone screenshot page", settled(ALL_CALLS, ALL_CALLS))
        else:
            d.get(base + "/?since=2026-11-25T16:43:29.000Z&until=2026-11-25T16:43:30.000Z")
            wait("desktop screenshot page", settled(18, 18))
        time.sleep(0.3)
        if phone:  # the whole page, as a phone scrolls it
            height = js("return document.scrollingElement.scrollHeight")
            d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                              {"width": 390, "height": min(height, 2400), "deviceScaleFactor": 2, "mobile": True})
            time.sleep(0.3)
        d.save_screenshot(shot)
        print(f"dashboard ({name}): {ALL_CALLS} calls, {len(failed)} failed; screenshot {shot}")
    finally:
        d.quit()
    return problems


problems = check(False, desktop_shot) + check(True, phone_shot)
if problems:
    print("browser check failed:\n  " + "\n  ".join(problems), file=sys.stderr)
    sys.exit(1)
