// Notifications: posts a chat message (a Slack/Teams-style incoming webhook, `{"text": ...}`)
// for each `call.failed` and `agent.performance_alert` webhook.
//
//   WEBHOOK_SECRET=whsec_... CHAT_WEBHOOK_URL=https://hooks.slack.com/... node server.js
//
// Each request is verified (Standard Webhooks signature, timestamp within 5 minutes),
// deduplicated by `webhook-id`, answered 204 at once, and its message posted after.

import express from "express";
import { Webhook, WebhookVerificationError } from "standardwebhooks";

const secret = process.env.WEBHOOK_SECRET;
const chatUrl = process.env.CHAT_WEBHOOK_URL;
if (!secret || !chatUrl) {
  console.error("set WEBHOOK_SECRET (the endpoint's whsec_ secret) and CHAT_WEBHOOK_URL");
  process.exit(1);
}
const host = process.env.HOST ?? "127.0.0.1";
const port = Number(process.env.PORT ?? 4002);
const webhook = new Webhook(secret);

// Deliveries seen, by webhook-id (the same on every retry of one delivery) -> when first
// seen. In memory: forgotten on restart and not shared between processes; keep it in
// Redis (SET NX EX) or a database unique key when that matters. Kept 14 days (past the
// service's last retry), at most MAX_SEEN ids; a Map iterates oldest first.
const SEEN_TTL_MS = 14 * 24 * 3600 * 1000;
const MAX_SEEN = 100_000;
const seen = new Map();

function firstSighting(id) {
  const now = Date.now();
  for (const [oldId, at] of seen) {
    if (now - at < SEEN_TTL_MS && seen.size < MAX_SEEN) break;
    seen.delete(oldId);
  }
  if (seen.has(id)) return false;
  seen.set(id, now);
  return true;
}

// Slack reads `<...>` as links and mentions: escape as its docs ask.
const escape = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

function format(event) {
  const d = event.data;
  switch (event.type) {
    case "call.failed": {
      const customer = d.participants?.find((p) => p.role === "customer");
      const caller = customer?.phone_number ?? customer?.identifier ?? "unknown caller";
      return `Call failed: ${escape(d.call_id)} (agent ${escape(d.agent_id)}, ` +
        `caller ${escape(caller)}): ${escape(d.error_code)} - ${escape(d.error_message)}`;
    }
    case "agent.performance_alert": {
      const window = d.window_seconds ? ` over the last ${d.window_seconds} s` : "";
      return `[${escape(d.severity).toUpperCase()}] Agent ${escape(d.agent_id)}: ` +
        `${escape(d.metric)} is ${d.value} (threshold ${d.threshold})${window}`;
    }
    default:
      return null; // a type this integration does not use
  }
}

async function postToChat(text) {
  // A few tries with backoff: the service already has its 2xx and will not send again.
  for (let attempt = 1; ; attempt++) {
    try {
      const res = await fetch(chatUrl, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ text }),
        signal: AbortSignal.timeout(10_000),
      });
      if (res.ok) return;
      throw new Error(`chat answered ${res.status}`);
    } catch (err) {
      if (attempt === 3) throw err;
      await new Promise((r) => setTimeout(r, 1000 * 2 ** attempt));
    }
  }
}

// Messages go out one at a time, in the order received.
let queue = Promise.resolve();

function notify(id, event) {
  const text = format(event);
  if (text === null) return;
  queue = queue.then(async () => {
    try {
      await postToChat(text);
      console.log(`posted ${id} (${event.type})`);
    } catch (err) {
      // Forget the id, so that a redelivery from the service posts it again.
      seen.delete(id);
      console.error(`could not post ${id} (${event.type}): ${err.message}`);
    }
  });
}

const app = express();

app.get("/healthz", (req, res) => res.send("ok"));

// The raw body: the signature is over the exact bytes sent.
app.post("/webhooks", express.raw({ type: "*/*", limit: "1mb" }), (req, res) => {
  const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
  let event;
  try {
    // Checks the signature and that webhook-timestamp is within 5 minutes of now.
    event = webhook.verify(body, req.headers);
  } catch (err) {
    const status = err instanceof WebhookVerificationError ? 401 : 400; // 400: malformed
    return res.status(status).json({ error: err.message });
  }
  if (typeof event?.type !== "string" || typeof event.data !== "object" || event.data === null) {
    return res.status(400).json({ error: "not an event" });
  }
  const id = req.headers["webhook-id"];
  // A repeat is answered 2xx too, so that the service stops sending it.
  if (firstSighting(id)) notify(id, event);
  else console.log(`duplicate ${id}, skipped`);
  res.status(204).end();
});

const server = app.listen(port, host, (err) => {
  if (err) throw err;
  console.log(`listening on http://${host}:${port}/webhooks`);
});

// On SIGTERM/SIGINT: stop taking requests, post what was queued, exit.
for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => {
    server.close();
    queue.then(() => process.exit(0));
  });
}
