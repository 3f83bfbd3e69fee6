#!/usr/bin/env python3
"""Loads the dashboard in headless Chromium (Debian's chromium + chromium-driver, driven by Selenium)
against a running `calltap serve`, fails on any JavaScript console error, an empty timeline or no
failure marked on it, and saves a screenshot. Usage: browser_check.py URL SCREENSHOT"""
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

url, shot = sys.argv[1], sys.argv[2]
opts = webdriver.ChromeOptions()
opts.binary_location = "/usr/bin/chromium"
for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900"):
    opts.add_argument(a)
opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
problems = []
try:
    driver.get(url)
    deadline = time.time() + 20
    bars = []
    while time.time() < deadline:
        bars = driver.find_elements(By.CSS_SELECTOR, "#timeline rect.call")
        if bars:
            break
        time.sleep(0.2)
    if not bars:
        problems.append("the timeline is empty")
    failed = [b for b in bars if b.get_attribute("data-outcome") != "ok"]
    if bars and not failed:
        problems.append("no failed call is marked on the timeline")
    rows = driver.find_elements(By.CSS_SELECTOR, "#summary tbody tr")
    if not rows:
        problems.append("the per-host summary is empty")
    if bars:  # hover a failed call: the tooltip must describe it
        from selenium.webdriver import ActionChains
        ActionChains(driver).move_to_element(failed[0] if failed else bars[0]).perform()
        tip = driver.find_element(By.ID, "tip").text
        if "outcome" not in tip:
            problems.append("hovering a call shows no details")
    for entry in driver.get_log("browser"):
        if entry.get("level") == "SEVERE":
            problems.append("console: " + entry.get("message", ""))
    driver.save_screenshot(shot)
    print(f"dashboard: {len(bars)} calls on the timeline, {len(failed)} failed, {len(rows)} hosts; screenshot {shot}")
finally:
    driver.quit()
if problems:
    print("browser check failed:\n  " + "\n  ".join(problems), file=sys.stderr)
    sys.exit(1)
