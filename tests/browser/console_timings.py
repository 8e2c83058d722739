#!/usr/bin/env python3
"""The console's first-load size and each page's time to interactive, in Debian's Chromium.

A measurement for BENCHMARKS.md, not a test (no timing is asserted anywhere): starts the
runner binary on a fresh data dir with one account, two endpoints (one failing) and 20
events, then
loads the console in a fresh browser context and opens each page five times. A page counts
as interactive when its main control (a button or a field a person would use next) is
visible and enabled. Prints a Markdown table.
"""

import argparse
import os
import statistics
import sys
import time

from playwright.sync_api import expect, sync_playwright

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from console_journey import ACCOUNT, CHROMIUM_ARGS, api, serving, wait_until  # noqa: E402

RUNS = 5


def seed(base, receiver):
    status, created = api(base, "POST", f"/v1/accounts/{ACCOUNT}/api-keys", {})
    assert status == 201, created
    status, types = api(base, "GET", "/v1/event-types")
    example = next(t["example"] for t in types["data"] if t["type"] == "call.ended")
    hooks = []
    for path in ["ok", "markup"]:
        status, hook = api(base, "POST", f"/v1/accounts/{ACCOUNT}/webhooks",
                           {"url": f"{receiver}/{path}", "event_types": ["call.*"],
                            "max_attempts": 1})
        assert status == 201, hook
        hooks.append(hook["id"])
    for i in range(20):
        status, answer = api(base, "POST", "/v1/events", {
            "id": f"evt_timing_{i}", "type": "call.ended", "account_id": ACCOUNT, "data": example})
        assert status == 202, answer

    def count(hook, status):
        listed = api(base, "GET", f"/v1/accounts/{ACCOUNT}/webhooks/{hook}/deliveries?limit=100")[1]
        return sum(1 for d in listed["data"] if d["status"] == status)

    # The failing endpoint's first delivery dies; the rest wait behind its probe (parked).
    def settled():
        return count(hooks[0], "succeeded") >= 20 and count(hooks[1], "dead") >= 1

    wait_until(settled, "the deliveries to settle", seconds=60)
    delivery = api(base, "GET", f"/v1/accounts/{ACCOUNT}/webhooks/{hooks[0]}/deliveries")[1]["data"][0]["id"]
    return created["key"], hooks[0], delivery


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runner", required=True)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()

    with serving(args.runner) as (base, receiver):
        key, hook, delivery = seed(base, receiver)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            # First load, with an empty cache: every byte the browser fetched.
            context = browser.new_context()
            page = context.new_page()
            responses = []
            page.on("response", lambda r: responses.append(r)
                    if r.url.startswith(base + "/console") and r.status == 200 else None)
            started = time.perf_counter()
            page.goto(base + "/console/")
            expect(page.get_by_role("button", name="Sign in")).to_be_enabled()
            first_load_ms = (time.perf_counter() - started) * 1000
            sizes = {r.url: len(r.body()) for r in responses}
            page.get_by_label("API key").fill(key)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("button", name="Sign out")).to_be_visible()

            pages = [
                ("Endpoints", "#/endpoints", lambda: page.get_by_role("button", name="Add endpoint")),
                ("An endpoint", f"#/endpoints/{hook}", lambda: page.get_by_role("link", name=delivery)),
                ("Payload inspector", f"#/deliveries/{delivery}", lambda: page.get_by_role("button", name="Retry")),
                ("Dashboard", "#/dashboard", lambda: page.get_by_role("row").filter(has_text="HTTP 500")),
                ("Events", "#/events", lambda: page.get_by_text("evt_timing_19").first),
                ("Dead letters", "#/dead-letters", lambda: page.get_by_role("checkbox").first),
                ("API keys", "#/api-keys", lambda: page.get_by_role("button", name="Revoke").first),
            ]
            rows = []
            for name, hash_, ready in pages:
                times = []
                for _ in range(RUNS):
                    page.goto(base + "/console/#/")
                    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
                    started = time.perf_counter()
                    page.evaluate(f"location.hash = {hash_!r}")
                    expect(ready()).to_be_visible()
                    times.append((time.perf_counter() - started) * 1000)
                rows.append((name, min(times), statistics.median(times), max(times)))
            browser.close()

    total = sum(sizes.values())
    print(f"First load: {len(sizes)} files, {total} bytes ({total / 1024:.1f} KiB, uncompressed), "
          f"sign-in interactive in {first_load_ms:.0f} ms\n")
    print(f"| page (ms to interactive, {RUNS} loads) | min | median | max |")
    print("| --- | --- | --- | --- |")
    for name, lo, mid, hi in rows:
        print(f"| {name} | {lo:.0f} | {mid:.0f} | {hi:.0f} |")


if __name__ == "__main__":
    main()
