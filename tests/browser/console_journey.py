#!/usr/bin/env python3
"""The console's journey in a real browser (Debian's Chromium, driven by Playwright).

Starts the runner binary on a fresh data dir and a local receiver, then goes through the
console as a person would, finding everything by role and accessible name (the names of
design/console.md), never by CSS class:

- a wrong key is refused with a message; an account key signs in;
- an endpoint is added for `call.*`, its secret shown once beside Copy; a `webhook.test`
  and a `call.ended` test are sent and answered 200; the secret is rotated; events posted
  with the platform key show up as deliveries; the inspector shows the request and its
  attempts;
- a receiver answering markup (`<img onerror>`, `<script>`) has it shown as text: no
  element is made of it and no script runs;
- the dashboard's counts and chart move when events are posted with the platform key; its
  error analysis groups the failure under `HTTP 500` and links to the delivery, account-wide
  and for the one endpoint; the events page lists the events; the
  exhausted delivery is redriven from the dead letters and attempted again;
- revoking the session's own key returns to sign-in with a message; sign-out forgets the
  key (nothing in sessionStorage or localStorage);
- no request leaves the console's origin, no script error, no CSP violation.

A screenshot of each page goes to --screenshots. Exits non-zero on the first failure.
"""

import argparse
import base64
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from playwright.sync_api import expect, sync_playwright

PLATFORM_KEY = "whp_console_journey_platform_key"
ACCOUNT = "acct_console"
MARKUP = '<img src=x onerror=alert(1)><script>alert(2)</script>'
HEADER_MARKUP = "<b>bold</b>"
DESCRIPTION = "CRM <b>sync</b>"
# What the console says when the API refuses a key (`REFUSED` in console/api.js).
REFUSED = "Your key was refused (revoked or wrong). Sign in again."
# Flags that keep Chromium from calling home on a machine with no outside network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# The bodies `/ok` received, in order.
RECEIVED = []
# The `authorization` headers `/auth…` received, and the form bodies `/token` received.
AUTHS = []
TOKEN_REQUESTS = []
TOKEN = b'{"access_token": "tok-console", "token_type": "Bearer", "expires_in": 3600}'


class Receiver(BaseHTTPRequestHandler):
    """`/ok…` answers 200; `/markup…` answers 500 with markup in its body and a header;
    `/token` is an OAuth token endpoint; `/auth…` answers 200 and keeps the credentials."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path.startswith("/ok"):
            RECEIVED.append(body)
        if self.path.startswith("/auth"):
            AUTHS.append(self.headers.get("authorization", ""))
        if self.path.startswith("/markup"):
            status, body = 500, MARKUP.encode()
        elif self.path == "/token":
            TOKEN_REQUESTS.append((body.decode(), self.headers.get("authorization", "")))
            status, body = 200, TOKEN
        else:
            status, body = 200, b"ok"
        self.send_response(status)
        self.send_header("content-type", "application/json" if self.path == "/token" else "text/html")
        self.send_header("content-length", str(len(body)))
        if self.path.startswith("/markup"):
            self.send_header("x-markup", HEADER_MARKUP)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(base, method, path, body=None, key=PLATFORM_KEY):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("authorization", f"Bearer {key}")
    if data is not None:
        request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def wait_until(check, what, seconds=15):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def start_runner(binary, data_dir, port):
    log = open(os.path.join(data_dir, "runner.log"), "w")
    process = subprocess.Popen(
        [binary, "--data-dir", data_dir, "--addr", f"127.0.0.1:{port}",
         "--platform-key", PLATFORM_KEY, "--allow-http", "--allow-cidr", "127.0.0.0/8",
         "--only-allowed-cidrs"],
        stdout=log, stderr=subprocess.STDOUT)

    def healthy():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return True
        except Exception:
            return process.poll() is not None

    try:
        wait_until(healthy, "the runner")
    except AssertionError:
        process.kill()
        raise
    if process.poll() is not None:
        sys.exit(f"the runner exited: {open(log.name).read()}")
    return process


@contextlib.contextmanager
def serving(runner_binary):
    """The local receiver and the runner on a fresh data dir: yields their base URLs; stops
    both after, and prints the end of the runner's log if the block failed."""
    receiver_server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver_server.serve_forever, daemon=True).start()
    receiver = f"http://127.0.0.1:{receiver_server.server_address[1]}"
    with tempfile.TemporaryDirectory() as data_dir:
        port = free_port()
        runner = start_runner(runner_binary, data_dir, port)
        try:
            yield f"http://127.0.0.1:{port}", receiver
        except Exception:
            print(open(os.path.join(data_dir, "runner.log")).read()[-4000:], file=sys.stderr)
            raise
        finally:
            runner.terminate()
            runner.wait(timeout=10)
            receiver_server.shutdown()


def journey(page, base, receiver, shots):
    def shot(name):
        page.screenshot(path=os.path.join(shots, f"{name}.png"), full_page=True)

    # The account's key, made with the platform key as an operator would.
    status, created = api(base, "POST", f"/v1/accounts/{ACCOUNT}/api-keys", {})
    assert status == 201, created
    account_key = created["key"]
    status, types = api(base, "GET", "/v1/event-types")
    assert status == 200, types
    example = next(t["example"] for t in types["data"] if t["type"] == "call.ended")

    # Sign-in: a wrong key is refused with a message, the account key gets in.
    page.goto(base + "/console")
    expect(page).to_have_url(re.compile(r"/console/"))
    page.get_by_label("API key").fill("whp_not_a_key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text(REFUSED)
    shot("sign-in")
    page.get_by_label("API key").fill(account_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    nav = page.get_by_role("navigation")
    for link in ["Endpoints", "Dashboard", "Events", "Dead letters", "Alerts", "API keys"]:
        expect(nav.get_by_role("link", name=link)).to_be_visible()

    # An endpoint for every call event; its secret is shown once, beside Copy.
    ok_url = f"{receiver}/ok"
    nav.get_by_role("link", name="Endpoints").click()
    page.get_by_role("button", name="Add endpoint").click()
    page.get_by_label("URL", exact=True).fill(ok_url)
    page.get_by_label("Description").fill(DESCRIPTION)
    page.get_by_role("checkbox", name="call.*", exact=True).check()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("button", name="Copy")).to_be_visible()
    expect(page.get_by_text(re.compile(r"whsec_"))).to_be_visible()
    # In the list (the confirmation above it links to it too).
    endpoint_link = page.get_by_role("row").get_by_role("link", name=ok_url)
    expect(endpoint_link).to_be_visible()
    # A description is text too.
    expect(page.get_by_role("cell", name=DESCRIPTION)).to_be_visible()
    assert page.locator("main b").filter(has_text="sync").count() == 0, "the description became markup"
    shot("endpoints")

    # Tests from its page, answered 200 by the receiver: the default and a call.ended.
    endpoint_link.click()
    for event_type in ["webhook.test", "call.ended"]:
        page.get_by_label("Event type").select_option(event_type)
        page.get_by_role("button", name="Send test").click()
        expect(page.get_by_role("status").filter(has_text="200")).to_be_visible()
    sent_types = [json.loads(body)["type"] for body in RECEIVED]
    assert sent_types == ["webhook.test", "call.ended"], sent_types

    # Diagnose: every step of the path passes, each with its time.
    page.get_by_role("button", name="Diagnose").click()
    diagnosis = page.get_by_role("status").filter(has_text="Every step passed.")
    expect(diagnosis).to_be_visible()
    for step in ["DNS", "Address guard", "TCP connect", "HTTP"]:
        expect(diagnosis.get_by_role("heading", name=re.compile(step))).to_be_visible()
    expect(diagnosis).to_contain_text("HTTP 200")
    del RECEIVED[2:]  # the diagnosis sent one more webhook.test

    # A new secret, shown once beside Copy.
    page.get_by_role("button", name="Rotate secret").click()
    expect(page.get_by_role("button", name="Copy")).to_be_visible()
    expect(page.get_by_text(re.compile(r"whsec_"))).to_be_visible()

    # The dashboard before more events: its counts, to see them move.
    nav.get_by_role("link", name="Dashboard").click()
    total_before = dashboard_total(page)
    chart_before = chart_succeeded(page)
    assert chart_before == total_before == 2, (chart_before, total_before)

    # Events posted with the platform key become deliveries, counted on the dashboard and
    # drawn on its chart; the inspector shows one.
    for i in range(3):
        status, answer = api(base, "POST", "/v1/events", {
            "id": f"evt_console_{i}", "type": "call.ended", "account_id": ACCOUNT,
            "data": example})
        assert status == 202, answer
    status, subs = api(base, "GET", f"/v1/accounts/{ACCOUNT}/webhooks")
    webhook_id = next(s["id"] for s in subs["data"] if s["url"] == ok_url)
    wait_until(lambda: sum(
        1 for d in api(base, "GET", f"/v1/accounts/{ACCOUNT}/webhooks/{webhook_id}/deliveries")[1]["data"]
        if d["status"] == "succeeded") >= 4, "four deliveries to succeed")
    page.get_by_role("button", name="Refresh").click()
    expect(page.get_by_text(re.compile(r"^\d+ attempts? in the last"))).to_have_text(
        re.compile(rf"^{total_before + 3} attempts? in the last 24 h"))
    assert chart_succeeded(page) == chart_before + 3, "the chart did not move"
    expect(page.get_by_role("img", name=re.compile(r"^Outcomes per 1h"))).to_be_visible()
    expect(page.get_by_role("img", name=re.compile(r"^Latency per 1h"))).to_be_visible()
    shot("dashboard-moving")
    nav.get_by_role("link", name="Endpoints").click()
    page.get_by_role("row").get_by_role("link", name=ok_url).click()
    deliveries = page.get_by_role("link", name=re.compile(r"^msg_"))
    expect(deliveries.first).to_be_visible()
    assert deliveries.count() >= 4, deliveries.count()
    shot("endpoint")
    deliveries.first.click()
    expect(page.get_by_role("heading", name="Request")).to_be_visible()
    expect(page.get_by_role("heading", name="Attempts")).to_be_visible()
    expect(page.get_by_role("button", name="Retry")).to_be_visible()
    shot("inspector")

    # A receiver answering markup: the inspector shows it as text, and nothing runs.
    markup_url = f"{receiver}/markup"
    status, created = api(base, "POST", f"/v1/accounts/{ACCOUNT}/webhooks",
                          {"url": markup_url, "event_types": ["call.ended"], "max_attempts": 1})
    assert status == 201, created
    status, answer = api(base, "POST", "/v1/events", {
        "id": "evt_console_markup", "type": "call.ended", "account_id": ACCOUNT, "data": example})
    assert status == 202, answer
    wait_until(lambda: any(
        d["status"] in ("failed", "dead")
        for d in api(base, "GET", f"/v1/accounts/{ACCOUNT}/webhooks/{created['id']}/deliveries")[1]["data"]),
        "the delivery to the markup receiver to fail")
    nav.get_by_role("link", name="Endpoints").click()
    page.get_by_role("row").get_by_role("link", name=markup_url).click()
    page.get_by_role("link", name=re.compile(r"^msg_")).first.click()
    expect(page.get_by_role("heading", name="Attempts")).to_be_visible()
    expect(page.get_by_text(MARKUP).first).to_be_visible()
    assert page.locator('img[src="x"]').count() == 0, "the response body became an element"
    response_headers = page.get_by_role("table", name=re.compile(r"^Response headers of attempt 1"))
    expect(response_headers.get_by_role("row").filter(has_text="x-markup")).to_contain_text(HEADER_MARKUP)
    assert page.locator("main b").filter(has_text="bold").count() == 0, "a response header became markup"
    shot("inspector-markup")

    # The dashboard: the failure is grouped under its cause, with a link to the delivery.
    nav.get_by_role("link", name="Dashboard").click()
    expect(page.get_by_label("Window")).to_be_visible()
    for heading in ["Deliveries", "Success rate", "Latency", "Error analysis", "Per endpoint"]:
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
    errors = page.get_by_role("table", name=re.compile(r"^Failures by cause"))
    http_500 = errors.get_by_role("row").filter(has_text="HTTP 500")
    expect(http_500).to_have_count(1)
    expect(http_500.get_by_role("cell").nth(1)).to_have_text("1")
    page.get_by_label("Window").select_option("1h")
    expect(page.get_by_text(re.compile(r"^\d+ attempts? in the last 1 h"))).to_be_visible()
    page.get_by_label("Endpoint", exact=True).select_option(label=markup_url)
    expect(page.get_by_text(re.compile(r"^1 attempt in the last 1 h"))).to_be_visible()
    expect(page.get_by_role("heading", name="Per endpoint")).to_have_count(0)
    shot("dashboard")
    http_500.get_by_role("link", name=re.compile(r"^msg_")).click()
    expect(page.get_by_role("heading", name="Attempts")).to_be_visible()
    expect(page.get_by_text(MARKUP).first).to_be_visible()
    nav.get_by_role("link", name="Events").click()
    expect(page.get_by_text("evt_console_markup", exact=True).first).to_be_visible()
    # The dead delivery was announced to the account, as an event of its own.
    expect(page.get_by_role("cell", name="delivery.dead", exact=True).first).to_be_visible()
    shot("events")

    # Dead letters: the exhausted delivery is listed; redriven, it is attempted again.
    nav.get_by_role("link", name="Dead letters").click()
    expect(page.get_by_role("button", name="Redrive all")).to_be_visible()
    status, dead = api(base, "GET", f"/v1/accounts/{ACCOUNT}/webhooks/{created['id']}/deliveries")
    dead_id = dead["data"][0]["id"]
    before = len(api(base, "GET", f"/v1/accounts/{ACCOUNT}/deliveries/{dead_id}")[1]["attempts"])
    shot("dead-letters")
    page.get_by_role("checkbox", name=dead_id, exact=True).check()
    page.get_by_role("button", name="Redrive selected").click()
    expect(page.get_by_role("status").filter(has_text="Redriven")).to_be_visible()
    wait_until(lambda: len(api(base, "GET", f"/v1/accounts/{ACCOUNT}/deliveries/{dead_id}")[1]["attempts"])
               > before, "the redriven delivery to be attempted again")

    # Receivers that authenticate: OAuth client credentials, then a JWT per delivery, each
    # chosen in the form; a test send from the endpoint's page carries the credentials.
    def add_endpoint_with_auth(url, kind, fill_auth):
        """Adds an endpoint for call.* with this kind of authentication, and opens it."""
        nav.get_by_role("link", name="Endpoints").click()
        page.get_by_role("button", name="Add endpoint").click()
        page.get_by_label("URL", exact=True).fill(url)
        page.get_by_role("checkbox", name="call.*", exact=True).check()
        page.get_by_label("Authentication", exact=True).select_option(kind)
        fill_auth()
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_role("button", name="Copy")).to_be_visible()
        page.get_by_role("row").get_by_role("link", name=url).click()

    def fill_oauth():
        page.get_by_label("Token URL").fill(f"{receiver}/token")
        page.get_by_label("Client ID").fill("crm")
        page.get_by_label("Client secret").fill("s3cret")
        page.get_by_label("Scope").fill("events:write")

    add_endpoint_with_auth(f"{receiver}/auth-oauth", "oauth2_client_credentials", fill_oauth)
    expect(page.get_by_text("OAuth 2.0 client credentials from")).to_be_visible()
    page.get_by_role("button", name="Send test").click()
    expect(page.get_by_role("status").filter(has_text="200")).to_be_visible()
    assert AUTHS == ["Bearer tok-console"], AUTHS
    form, client = TOKEN_REQUESTS[-1]
    assert form == "grant_type=client_credentials&scope=events%3Awrite", form
    assert client == "Basic " + base64.b64encode(b"crm:s3cret").decode(), client
    shot("endpoint-oauth")

    jwt_url = f"{receiver}/auth-jwt"
    add_endpoint_with_auth(jwt_url, "jwt", lambda: expect(
        page.get_by_text("/v1/.well-known/jwks.json")).to_be_visible())
    expect(page.get_by_text("JWT (ES256), audience the endpoint URL")).to_be_visible()
    page.get_by_role("button", name="Send test").click()
    expect(page.get_by_role("status").filter(has_text="200")).to_be_visible()
    token = AUTHS[-1].removeprefix("Bearer ")
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert header["alg"] == "ES256" and claims["aud"] == jwt_url, (header, claims)
    keys = json.loads(urllib.request.urlopen(f"{base}/v1/.well-known/jwks.json").read())["keys"]
    assert header["kid"] in [k["kid"] for k in keys], keys

    # Alerts: a bad address is refused and named; good settings are saved and kept.
    nav.get_by_role("link", name="Alerts").click()
    expect(page.get_by_role("heading", name="Alerts")).to_be_visible()
    emails = page.get_by_label("E-mail addresses")
    emails.fill("ops@example.com\nnot an address")
    page.get_by_role("button", name="Save alerts").click()
    expect(page.get_by_role("alert")).to_contain_text("E-mail addresses (1)")
    emails.fill("ops@example.com\noncall@example.com")
    page.get_by_role("checkbox", name="webhook.recovered").uncheck()
    page.get_by_label("Failing after (failures in a row)").fill("3")
    page.get_by_role("button", name="Save alerts").click()
    expect(page.get_by_role("status").filter(has_text="Alerts saved")).to_be_visible()
    status, saved = api(base, "GET", f"/v1/accounts/{ACCOUNT}/alerts")
    assert status == 200, saved
    assert saved["emails"] == ["ops@example.com", "oncall@example.com"], saved
    assert "webhook.recovered" not in saved["events"] and "delivery.dead" in saved["events"], saved
    assert saved["failing_after_failures"] == 3, saved
    shot("alerts")

    # Revoking the session's own key: the next call is refused, back to sign-in.
    nav.get_by_role("link", name="API keys").click()
    mine = page.get_by_role("row").filter(has_text="(this session)")
    expect(mine).to_have_count(1)
    shot("api-keys")
    mine.get_by_role("button", name="Revoke").click()
    expect(page.get_by_label("API key")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text(REFUSED)

    # The platform key with an account; sign-out forgets it.
    page.get_by_label("API key").fill(PLATFORM_KEY)
    page.get_by_label("Account").fill(ACCOUNT)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    stored = page.evaluate("JSON.stringify([Object.values(sessionStorage), Object.keys(localStorage)])")
    assert PLATFORM_KEY in json.loads(stored)[0], stored
    assert json.loads(stored)[1] == [], f"localStorage holds {stored}"
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API key")).to_be_visible()
    left = page.evaluate("JSON.stringify([Object.values(sessionStorage), Object.values(localStorage)])")
    assert PLATFORM_KEY not in left, f"the key outlived sign-out: {left}"


def dashboard_total(page):
    """The dashboard's attempt count, as the page says it."""
    text = page.get_by_text(re.compile(r"^\d+ attempts? in the last")).inner_text()
    return int(text.split()[0])


def chart_succeeded(page):
    """The succeeded attempts the outcomes chart draws, summed from its table of numbers."""
    numbers = page.get_by_role("table", name=re.compile(r"^Outcomes per"))
    if not numbers.is_visible():
        page.get_by_text("Show the numbers").first.click()
    rows = numbers.get_by_role("row")
    expect(rows.first).to_be_visible()
    total = 0
    for i in range(1, rows.count()):
        total += int(rows.nth(i).get_by_role("cell").nth(1).inner_text())
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runner", required=True, help="the runner binary")
    parser.add_argument("--screenshots", required=True, help="where the page images go")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    os.makedirs(args.screenshots, exist_ok=True)

    with serving(args.runner) as (base, receiver):
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(10_000)
            outside, problems = [], []
            page.on("request", lambda r: None if r.url.startswith(base + "/") else outside.append(r.url))
            page.on("pageerror", lambda e: problems.append(f"script error: {e}"))
            page.on("dialog", lambda d: (problems.append(f"a dialog opened: {d.message}"), d.dismiss()))
            page.on("console", lambda m: problems.append(f"console: {m.text}")
                    if "Content Security Policy" in m.text else None)
            journey(page, base, receiver, args.screenshots)
            browser.close()
        assert not outside, f"requests left the console's origin: {outside}"
        assert not problems, "\n".join(problems)
    print(f"console journey passed; screenshots in {args.screenshots}")


if __name__ == "__main__":
    main()
