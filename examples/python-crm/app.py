"""CRM lead sync: keeps one lead per caller, with their latest call and quality score,
from `call.ended` and `call.quality_scored` webhooks.

    WEBHOOK_SECRET=whsec_... python app.py --db crm.db --port 4001

Each request is verified (Standard Webhooks signature, timestamp within 5 minutes), put on
a queue and answered 204 at once; a worker thread applies it to SQLite. The worker records
the delivery's `webhook-id` in the same transaction as the lead upsert, so a delivery sent
again (a retry after a timeout, a manual redelivery) is applied at most once.
"""

import argparse
import logging
import os
import queue
import signal
import sqlite3
import sys
import threading
from datetime import datetime, timezone

from flask import Flask, request
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

log = logging.getLogger("crm")

SCHEMA = """
CREATE TABLE IF NOT EXISTS leads (
    lead_key TEXT PRIMARY KEY,      -- the customer's phone number (or other identifier)
    agent_id TEXT,
    call_count INTEGER NOT NULL DEFAULT 0,
    last_call_id TEXT,
    last_call_at TEXT,              -- the event's timestamp, normalised (see `event_time`)
    last_duration_seconds INTEGER,
    last_end_reason TEXT,
    score REAL,
    score_call_id TEXT,
    scored_at TEXT,
    updated_at TEXT NOT NULL
);
-- Deliveries already applied, by `webhook-id` (the same on every retry of one delivery).
CREATE TABLE IF NOT EXISTS processed_webhooks (
    webhook_id TEXT PRIMARY KEY,
    event_id TEXT,
    processed_at TEXT NOT NULL
);
"""

LEAD_COLUMNS = (
    "lead_key", "agent_id", "call_count", "last_call_id", "last_call_at",
    "last_duration_seconds", "last_end_reason", "score", "score_call_id", "scored_at",
    "updated_at",
)


def connect(path):
    # Autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE below.
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


def event_time(value):
    """The event's RFC 3339 timestamp as fixed-width UTC text, so that comparing two as
    strings compares them as times (`12.4Z` and `12.42Z` would not)."""
    parsed = datetime.fromisoformat(value).astimezone(timezone.utc)
    return parsed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lead_key(data):
    customer = next((p for p in data["participants"] if p.get("role") == "customer"), {})
    return customer.get("phone_number") or customer.get("identifier") or f"call:{data['call_id']}"


def apply_event(conn, event):
    """Upserts the lead an event is about. Deliveries may arrive out of order, so an older
    call or score never replaces a newer one."""
    data = event["data"]
    at = event_time(event["timestamp"])
    key = lead_key(data)
    row = conn.execute("SELECT * FROM leads WHERE lead_key = ?", (key,)).fetchone()
    lead = dict(row) if row else dict.fromkeys(LEAD_COLUMNS) | {"lead_key": key, "call_count": 0}

    if event["type"] == "call.ended":
        lead["call_count"] += 1
        if lead["last_call_at"] is None or at >= lead["last_call_at"]:
            lead.update(
                agent_id=data["agent_id"],
                last_call_id=data["call_id"],
                last_call_at=at,
                last_duration_seconds=data["duration_seconds"],
                last_end_reason=data.get("end_reason"),
            )
    elif event["type"] == "call.quality_scored":
        if lead["scored_at"] is None or at >= lead["scored_at"]:
            lead.update(score=data["score"], score_call_id=data["call_id"], scored_at=at)
        lead["agent_id"] = lead["agent_id"] or data["agent_id"]
    else:
        return  # a type this integration does not use
    lead["updated_at"] = datetime.now(timezone.utc).isoformat()

    columns = ", ".join(LEAD_COLUMNS)
    placeholders = ", ".join(f":{c}" for c in LEAD_COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in LEAD_COLUMNS if c != "lead_key")
    conn.execute(
        f"INSERT INTO leads ({columns}) VALUES ({placeholders}) "
        f"ON CONFLICT (lead_key) DO UPDATE SET {updates}",
        lead,
    )


def process(conn, webhook_id, event):
    """Applies one delivery unless its id was applied before. Returns whether it was new.
    BEGIN IMMEDIATE takes the write lock first, so this holds with several worker
    processes on one database too."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        new = conn.execute(
            "INSERT OR IGNORE INTO processed_webhooks VALUES (?, ?, ?)",
            (webhook_id, event.get("id"), datetime.now(timezone.utc).isoformat()),
        ).rowcount == 1
        if new:
            apply_event(conn, event)
        conn.execute("COMMIT")
        return new
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def worker(db_path, jobs):
    conn = connect(db_path)
    while (job := jobs.get()) is not None:
        webhook_id, event = job
        try:
            new = process(conn, webhook_id, event)
            outcome = "applied" if new else "duplicate, skipped"
            log.info("%s %s (%s)", outcome, webhook_id, event["type"])
        except Exception:
            # The sender already has its 2xx and will not retry: log enough to replay it.
            log.exception("could not apply %s: %r", webhook_id, event)
        finally:
            jobs.task_done()
    conn.close()


def create_app(secret, jobs):
    webhook = Webhook(secret)
    app = Flask(__name__)

    @app.get("/healthz")
    def healthz():
        return "ok"

    @app.post("/webhooks")
    def receive():
        body = request.get_data()
        try:
            # Checks the signature against the raw body, and that webhook-timestamp is
            # within 5 minutes of now (a replayed old request is refused).
            event = webhook.verify(body, dict(request.headers))
        except WebhookVerificationError as e:
            return {"error": str(e)}, 401
        except Exception:
            # The library raises ValueError & co. on malformed headers or a non-JSON body.
            return {"error": "malformed webhook request"}, 400
        if not isinstance(event, dict) or not isinstance(event.get("data"), dict):
            return {"error": "not an event"}, 400
        try:
            jobs.put_nowait((request.headers["webhook-id"], event))
        except queue.Full:
            return {"error": "busy, retry later"}, 503  # the service will retry
        return "", 204

    return app


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=os.environ.get("CRM_DB", "crm.db"),
                        help="SQLite file (env CRM_DB, default crm.db)")
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "4001")))
    args = parser.parse_args()
    secret = os.environ.get("WEBHOOK_SECRET")
    if not secret:
        sys.exit("set WEBHOOK_SECRET to the endpoint's whsec_ secret")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    conn = connect(args.db)
    conn.executescript(SCHEMA)
    conn.close()

    jobs = queue.Queue(maxsize=10_000)
    thread = threading.Thread(target=worker, args=(args.db, jobs), daemon=True)
    thread.start()
    # On SIGTERM, leave the server loop through `finally` and finish what was queued.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        create_app(secret, jobs).run(host=args.host, port=args.port)
    finally:
        jobs.put(None)
        thread.join(timeout=10)


if __name__ == "__main__":
    main()
