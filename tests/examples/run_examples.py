#!/usr/bin/env python3
"""End-to-end test of the integration examples in examples/, against the real runner.

    python3 tests/examples/run_examples.py --runner ./target/debug/webhooks \\
        --rust-receiver ./target/debug/example-axum-receiver

Starts the runner (fresh data dir, free port, random platform key) and a local chat sink,
then for each example: creates an endpoint for it, starts it with the endpoint's secret,
and checks that
- the events posted with the platform key reach it and have their effect (python-crm: the
  leads in SQLite with their latest score; node-notify: one chat message per event;
  rust-axum: one JSON line per event);
- a redelivery through the API (same `webhook-id`) is answered 2xx and changes nothing;
- forged, tampered, unsigned, stale and future-dated requests sent straight to it are
  refused with a 4xx and change nothing.
"Changes nothing" is checked after one more (sentinel) event has had its effect: each
example handles its deliveries in order, so by then anything earlier has been handled.

Needs flask and standardwebhooks for this Python (tests/python/requirements.txt), `node`
with `npm ci` done in examples/node-notify, and the built Rust example. Stops everything it
started, also on failure, and exits non-zero with the failed check and the logs' ends.

`--only python,node` runs only some examples: a development aid (e.g. without a Rust build);
the test command runs them all.
"""

import argparse
import base64
import copy
import hashlib
import hmac
import json
import os
import secrets
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
ALL = ("python", "node", "rust")


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


def wait_until(probe, what, seconds=15):
    """Polls `probe` until it returns something truthy, and returns that."""
    deadline = time.monotonic() + seconds
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, headers=None):
    """One request: (status, body parsed as JSON when it is JSON)."""
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None and "content-type" not in {k.lower() for k in request.headers}:
        request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw


def sign(secret, msg_id, timestamp, body):
    """A Standard Webhooks signature, as the service makes it (shared/domain/src/signing.rs)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def rfc3339(seconds_ago):
    at = datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


class ChatSink(BaseHTTPRequestHandler):
    """Stands in for a Slack/Teams incoming webhook: keeps each posted body, answers `ok`."""

    received = []
    lock = threading.Lock()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            body = json.loads(body)
        except ValueError:
            pass
        with self.lock:
            self.received.append({"path": self.path, "content_type": self.headers.get("content-type"),
                                  "body": body})
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass

    @classmethod
    def messages(cls):
        with cls.lock:
            return list(cls.received)


class Harness:
    """The processes started (stopped at exit) and the runner's API."""

    def __init__(self, stack, workdir, rust_receiver):
        self.stack = stack
        self.workdir = workdir
        self.rust_receiver = rust_receiver
        self.chat_url = None  # the chat sink's, once started
        self.logs = {}

    def start(self, name, argv, env=None, cwd=None):
        log_path = self.workdir / f"{name}.log"
        log = open(log_path, "w")
        self.stack.callback(log.close)
        try:
            process = subprocess.Popen(
                argv, cwd=cwd, env={**os.environ, **(env or {})},
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        except OSError as e:
            raise Failure(f"could not start {name} ({argv[0]}): {e}")
        self.stack.callback(stop, process)
        self.logs[name] = log_path
        return process

    def wait_healthy(self, name, process, url):
        def healthy():
            check(process.poll() is None, f"{name} exited with {process.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    return response.status == 200
            except OSError:
                return False
        wait_until(healthy, f"{name} to answer {url}", seconds=30)

    def log_tail(self, name, lines=30):
        try:
            return "".join(self.logs[name].read_text(errors="replace").splitlines(True)[-lines:])
        except (KeyError, OSError):
            return ""


def stop(process):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Runner:
    def __init__(self, base, key):
        self.base, self.key = base, key
        _, catalog = self.call("GET", "/v1/event-types")
        self.examples = {t["type"]: t["example"] for t in catalog["data"]}

    def call(self, method, path, body=None, expect=None):
        status, answer = http(method, self.base + path, body,
                              {"authorization": f"Bearer {self.key}"})
        if expect is not None:
            check(status == expect, f"{method} {path}: expected {expect}, got {status}: {answer}")
        return status, answer

    def event(self, account, event_type, occurred_at=None, **data):
        """An event of `event_type`: the catalog's example with `data` changed."""
        event = {
            "id": f"evt_{secrets.token_hex(8)}",
            "type": event_type,
            "account_id": account,
            "data": {**copy.deepcopy(self.examples[event_type]), **data},
        }
        if occurred_at:
            event["occurred_at"] = occurred_at
        return event

    def post(self, event):
        self.call("POST", "/v1/events", event, expect=202)
        return event

    def deliveries(self, account, webhook_id):
        _, answer = self.call("GET", f"/v1/accounts/{account}/webhooks/{webhook_id}/deliveries",
                              expect=200)
        return answer["data"]


def customer(phone):
    return [{"role": "agent", "identifier": "agent_42"}, {"role": "customer", "phone_number": phone}]


class Example:
    """One example under test. Subclasses say how to start it, what to send, and what its
    state (the outcome the test looks at) must be."""

    name = ""
    event_types = []

    def __init__(self, harness, runner, account):
        self.harness, self.runner, self.account = harness, runner, account

    def start(self, port, secret):
        raise NotImplementedError

    def send_events(self):
        """Posts this example's events; returns how many deliveries they make."""
        raise NotImplementedError

    def state(self):
        raise NotImplementedError

    def check_state(self, state, delivery_ids):
        raise NotImplementedError

    def handled(self, state, delivery_ids):
        """Whether all the deliveries have had their effect (the example works after 2xx)."""
        raise NotImplementedError

    def intruder(self):
        """An event that would show in the state if it were accepted."""
        raise NotImplementedError

    def sentinel(self):
        """Posts the sentinel event; returns a probe of a state telling whether it shows."""
        raise NotImplementedError

    def without_sentinel(self, state):
        """The state with the sentinel's effect taken out, to compare with `comparable`."""
        raise NotImplementedError

    def comparable(self, state):
        return state


class PythonCrm(Example):
    name = "python-crm"
    event_types = ["call.ended", "call.quality_scored"]
    A, B, SENTINEL = "+14155550101", "+14155550102", "+14155550199"

    def start(self, port, secret):
        self.db = self.harness.workdir / "crm.db"
        return self.harness.start(
            self.name,
            [sys.executable, str(EXAMPLES / "python-crm" / "app.py"), "--db", str(self.db),
             "--port", str(port)],
            env={"WEBHOOK_SECRET": secret, "HOST": "127.0.0.1"})

    def send_events(self):
        r, a = self.runner, self.account
        # Two calls and two scores for A; the older score is posted last and must not
        # replace the newer one (deliveries may arrive in any order anyway).
        for event in [
            r.event(a, "call.ended", rfc3339(300), call_id="call_a1", participants=customer(self.A),
                    duration_seconds=120),
            r.event(a, "call.ended", rfc3339(150), call_id="call_a2", participants=customer(self.A),
                    duration_seconds=45, end_reason="agent_hangup"),
            r.event(a, "call.quality_scored", rfc3339(100), call_id="call_a2",
                    participants=customer(self.A), score=91.5),
            r.event(a, "call.quality_scored", rfc3339(200), call_id="call_a1",
                    participants=customer(self.A), score=62),
            r.event(a, "call.ended", rfc3339(50), call_id="call_b1", participants=customer(self.B),
                    agent_id="agent_7"),
        ]:
            r.post(event)
        return 5

    def state(self):
        if not self.db.exists():
            return {"leads": {}, "processed": []}
        conn = sqlite3.connect(self.db, timeout=5)
        conn.row_factory = sqlite3.Row
        try:
            leads = {row["lead_key"]: dict(row) for row in conn.execute("SELECT * FROM leads")}
            processed = sorted(r[0] for r in conn.execute("SELECT webhook_id FROM processed_webhooks"))
        except sqlite3.OperationalError:  # the tables are not created yet
            return {"leads": {}, "processed": []}
        finally:
            conn.close()
        return {"leads": leads, "processed": processed}

    def handled(self, state, delivery_ids):
        return len(state["processed"]) >= len(delivery_ids)

    def check_state(self, state, delivery_ids):
        check(state["processed"] == sorted(delivery_ids),
              f"processed webhook ids {state['processed']} are not the delivery ids"
              f" {sorted(delivery_ids)}")
        check(set(state["leads"]) == {self.A, self.B}, f"leads: {sorted(state['leads'])}")
        expected = {
            self.A: {"call_count": 2, "last_call_id": "call_a2", "last_duration_seconds": 45,
                     "last_end_reason": "agent_hangup", "score": 91.5, "score_call_id": "call_a2"},
            self.B: {"call_count": 1, "last_call_id": "call_b1", "agent_id": "agent_7",
                     "score": None},
        }
        for key, fields in expected.items():
            lead = state["leads"][key]
            check({k: lead[k] for k in fields} == fields, f"lead {key}: {lead}, expected {fields}")

    def intruder(self):
        return self.runner.event(self.account, "call.ended", call_id="call_forged",
                                 participants=customer("+14155550666"))

    def sentinel(self):
        self.runner.post(self.runner.event(self.account, "call.ended", call_id="call_sentinel",
                                           participants=customer(self.SENTINEL)))
        return lambda state: self.SENTINEL in state["leads"]

    def without_sentinel(self, state):
        # The sentinel's delivery is one processed id more (its id is not looked up).
        leads = {k: v for k, v in state["leads"].items() if k != self.SENTINEL}
        return {"leads": leads, "processed": len(state["processed"]) - 1}

    def comparable(self, state):
        return {"leads": state["leads"], "processed": len(state["processed"])}


class NodeNotify(Example):
    name = "node-notify"
    event_types = ["call.failed", "agent.performance_alert"]
    EXPECTED = [
        "Call failed: call_nf_1 (agent agent_42, caller +14155550123): carrier_unreachable"
        " - The destination carrier did not answer the call setup request.",
        "[CRITICAL] Agent agent_7: avg_latency_ms is 1240.5 (threshold 800) over the last 300 s",
    ]
    SENTINEL = "[INFO] Agent agent_sentinel: avg_latency_ms is 900 (threshold 800) over the last 60 s"

    def start(self, port, secret):
        directory = EXAMPLES / "node-notify"
        check((directory / "node_modules").is_dir(),
              "examples/node-notify/node_modules is missing: run `npm ci` in examples/node-notify")
        self.chat_path = f"/chat/{secrets.token_hex(4)}"
        return self.harness.start(
            self.name, ["node", "server.js"], cwd=directory,
            env={"WEBHOOK_SECRET": secret, "PORT": str(port), "HOST": "127.0.0.1",
                 "CHAT_WEBHOOK_URL": self.harness.chat_url + self.chat_path})

    def send_events(self):
        r, a = self.runner, self.account
        r.post(r.event(a, "call.failed", call_id="call_nf_1"))
        r.post(r.event(a, "agent.performance_alert", agent_id="agent_7", severity="critical",
                       value=1240.5, threshold=800, window_seconds=300))
        return 2

    def state(self):
        return ChatSink.messages()

    def handled(self, state, delivery_ids):
        return len(state) >= len(delivery_ids)

    def check_state(self, state, delivery_ids):
        for message in state:
            check(message["path"] == self.chat_path,
                  f"a chat message went to {message['path']}, not {self.chat_path}")
            check(message["content_type"] == "application/json"
                  and isinstance(message["body"], dict) and list(message["body"]) == ["text"],
                  f"a chat message is not a JSON {{\"text\": ...}}: {message}")
        texts = sorted(m["body"]["text"] for m in state)
        check(texts == sorted(self.EXPECTED),
              f"chat messages {texts}, expected {sorted(self.EXPECTED)}")

    def intruder(self):
        return self.runner.event(self.account, "call.failed", call_id="call_forged")

    def sentinel(self):
        self.runner.post(self.runner.event(
            self.account, "agent.performance_alert", agent_id="agent_sentinel", severity="info",
            value=900, threshold=800, window_seconds=60))
        return lambda state: any(m["body"] == {"text": self.SENTINEL} for m in state)

    def without_sentinel(self, state):
        return [m for m in state if m["body"] != {"text": self.SENTINEL}]


class RustAxum(Example):
    name = "rust-axum"
    event_types = ["*"]

    def start(self, port, secret):
        self.file = self.harness.workdir / "events.jsonl"
        return self.harness.start(self.name, [self.harness.rust_receiver, str(self.file)],
                                  env={"WEBHOOK_SECRET": secret, "PORT": str(port),
                                       "HOST": "127.0.0.1"})

    def send_events(self):
        r, a = self.runner, self.account
        self.posted = {e["id"]: e for e in [
            r.post(r.event(a, "call.ended", call_id="call_rx_1")),
            r.post(r.event(a, "agent.performance_alert", agent_id="agent_9")),
        ]}
        return 2

    def state(self):
        try:
            text = self.file.read_text()
        except FileNotFoundError:
            return []
        # Whole lines only: the last one may be being written.
        try:
            return [json.loads(line) for line in text.split("\n")[:-1]]
        except ValueError:
            raise Failure(f"{self.file.name} has a line that is not JSON:\n{text}")

    def handled(self, state, delivery_ids):
        return len(state) >= len(delivery_ids)

    def check_state(self, state, delivery_ids):
        check(sorted(line.get("webhook_id") for line in state) == sorted(delivery_ids),
              f"the lines' webhook ids are not the deliveries {sorted(delivery_ids)}: {state}")
        for line in state:
            event = line["event"]
            sent = self.posted.get(event.get("id"))
            check(sent is not None, f"a line for an event not sent: {line}")
            check((event["type"], event["account_id"], event["data"])
                  == (sent["type"], sent["account_id"], sent["data"]),
                  f"line {line} does not carry the event sent: {sent}")

    def intruder(self):
        return self.runner.event(self.account, "call.ended", call_id="call_forged")

    def sentinel(self):
        event = self.runner.post(self.runner.event(self.account, "call.ended",
                                                   call_id="call_sentinel"))
        return lambda state: any(line["event"].get("id") == event["id"] for line in state)

    def without_sentinel(self, state):
        return [line for line in state if line["event"]["data"].get("call_id") != "call_sentinel"]


def refused_requests(secret, event):
    """Requests a receiver must refuse: (what, headers, body). Each has a fresh webhook-id,
    so deduplication cannot be what stops it."""
    body = json.dumps(event).encode()
    now = int(time.time())
    other_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()

    def headers(what, timestamp, signing_secret, signed_body=body):
        msg_id = f"msg_{what}_{secrets.token_hex(6)}"
        h = {"content-type": "application/json", "webhook-id": msg_id,
             "webhook-timestamp": str(timestamp)}
        if signing_secret:
            h["webhook-signature"] = sign(signing_secret, msg_id, timestamp, signed_body)
        return h

    return [
        ("a forged signature (another secret)", headers("forged", now, other_secret), body),
        ("a signature of another body",
         headers("tampered", now, secret, signed_body=b'{"id":"evt_other"}'), body),
        # Correctly signed, but ten minutes off: past the five-minute tolerance.
        ("a stale timestamp", headers("stale", now - 600, secret), body),
        ("a timestamp ahead", headers("ahead", now + 600, secret), body),
        ("no signature", headers("unsigned", now, None), body),
    ]


def exercise(example_class, harness, runner):
    account = f"acct_{example_class.name.replace('-', '_')}_{secrets.token_hex(3)}"
    example = example_class(harness, runner, account)
    port = free_port()
    url = f"http://127.0.0.1:{port}/webhooks"

    _, hook = runner.call("POST", f"/v1/accounts/{account}/webhooks",
                          {"url": url, "event_types": example.event_types}, expect=201)
    process = example.start(port, hook["secret"])
    harness.wait_healthy(example.name, process, f"http://127.0.0.1:{port}/healthz")

    # 1. The events reach it and have their effect.
    expected = example.send_events()

    def all_succeeded():
        deliveries = runner.deliveries(account, hook["id"])
        # The first attempt must succeed: a pending one with an attempt has failed once.
        failed = [d for d in deliveries if d["status"] != "succeeded" and d["attempt_count"]]
        check(not failed, f"deliveries did not succeed: {failed}")
        done = len(deliveries) == expected and all(d["status"] == "succeeded" for d in deliveries)
        return done and deliveries
    deliveries = wait_until(all_succeeded, f"{expected} succeeded deliveries")
    delivery_ids = [d["id"] for d in deliveries]
    state = wait_until(lambda: (s := example.state()) and example.handled(s, delivery_ids) and s,
                       "the deliveries to be handled")
    example.check_state(state, delivery_ids)
    print(f"  ok: {expected} events delivered and handled")

    # 2. Every delivery sent again through the API, with the same webhook-id: answered 2xx.
    for d in delivery_ids:
        runner.call("POST", f"/v1/accounts/{account}/deliveries/{d}/retry", expect=202)
    for d in delivery_ids:
        def retried(d=d):
            _, delivery = runner.call("GET", f"/v1/accounts/{account}/deliveries/{d}", expect=200)
            attempts = delivery.get("attempts") or []
            return len(attempts) >= 2 and attempts[-1]
        last = wait_until(retried, f"the redelivery of {d}")
        check(200 <= (last.get("status_code") or 0) < 300,
              f"the redelivery of {d} was answered {last.get('status_code')}:"
              f" {last.get('response_body')}")
    print(f"  ok: {len(delivery_ids)} redeliveries answered 2xx")

    # 3. Requests it must refuse, straight to it.
    for what, headers, body in refused_requests(hook["secret"], example.intruder()):
        status, answer = http("POST", url, body, headers)
        check(400 <= status < 500, f"{what}: answered {status} ({answer}), expected a 4xx")
    print("  ok: forged, tampered, stale, ahead and unsigned requests refused with a 4xx")

    # 4. None of that changed anything: once the sentinel shows, the state is the first one
    # plus the sentinel.
    shows = example.sentinel()
    after = wait_until(lambda: (s := example.state()) and shows(s) and s, "the sentinel event")
    check(example.without_sentinel(after) == example.comparable(state),
          f"redeliveries or refused requests changed the state:\nbefore: {example.comparable(state)}"
          f"\nafter (without the sentinel): {example.without_sentinel(after)}")
    print("  ok: nothing changed but the sentinel")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runner", required=True, help="the runner binary (target/debug/webhooks)")
    parser.add_argument("--rust-receiver",
                        help="the built Rust example (target/debug/example-axum-receiver)")
    parser.add_argument("--only", default=",".join(ALL),
                        help="development aid: a comma-separated subset of python,node,rust")
    args = parser.parse_args()
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(only) - set(ALL)
    if unknown or not only:
        parser.error(f"--only takes names among {','.join(ALL)}")
    if "rust" in only and not args.rust_receiver:
        parser.error("--rust-receiver is required (or leave rust out with --only, to develop)")
    for label, path in (("--runner", args.runner), ("--rust-receiver", args.rust_receiver)):
        if path and not os.access(path, os.X_OK):
            parser.error(f"{label} {path} is not an executable file")

    started = time.monotonic()
    current = "setup"
    # The processes (in the stack) are stopped before their directory is removed.
    with tempfile.TemporaryDirectory(prefix="examples-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        harness = Harness(stack, workdir,
                          os.path.abspath(args.rust_receiver) if args.rust_receiver else None)
        try:
            sink = ThreadingHTTPServer(("127.0.0.1", 0), ChatSink)
            threading.Thread(target=sink.serve_forever, daemon=True).start()
            stack.callback(sink.server_close)
            stack.callback(sink.shutdown)
            harness.chat_url = f"http://127.0.0.1:{sink.server_address[1]}"

            port, key = free_port(), f"whp_examples_{secrets.token_hex(12)}"
            data_dir = workdir / "runner-data"
            data_dir.mkdir()
            runner_process = harness.start(
                "runner",
                [os.path.abspath(args.runner), "--data-dir", str(data_dir),
                 "--addr", f"127.0.0.1:{port}", "--platform-key", key,
                 "--allow-http", "--allow-cidr", "127.0.0.0/8", "--only-allowed-cidrs"])
            harness.wait_healthy("runner", runner_process, f"http://127.0.0.1:{port}/healthz")
            runner = Runner(f"http://127.0.0.1:{port}", key)

            chosen = {"python": PythonCrm, "node": NodeNotify, "rust": RustAxum}
            for name in ALL:
                if name in only:
                    current = chosen[name].name
                    print(f"{current}:", flush=True)
                    exercise(chosen[name], harness, runner)
        except Exception as e:
            reason = str(e) if isinstance(e, Failure) else traceback.format_exc()
            print(f"\nFAIL [{current}]: {reason}", file=sys.stderr)
            for name in ("runner", current):
                tail = harness.log_tail(name)
                if tail:
                    print(f"\n--- end of the {name} log ---\n{tail}", file=sys.stderr)
            return 1
    skipped = [name for name in ALL if name not in only]
    note = f" (skipped with --only: {', '.join(skipped)})" if skipped else ""
    print(f"all examples passed in {time.monotonic() - started:.1f} s{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
