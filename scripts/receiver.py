#!/usr/bin/env python3
"""A local webhook receiver for trying the service: prints each delivery and checks its
Standard Webhooks signature. Standard library only.

    python3 scripts/receiver.py --port 9000 --secret whsec_...
"""
import argparse
import base64
import hashlib
import hmac
import http.server
import json
import time


def verify(secret, headers, body):
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    fresh = abs(time.time() - int(headers["webhook-timestamp"])) <= 300
    return fresh and any(hmac.compare_digest(s, expected) for s in headers["webhook-signature"].split(" "))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--secret", help="the subscription's whsec_ secret, to check signatures")
    parser.add_argument("--status", type=int, default=204, help="status code to answer with")
    args = parser.parse_args()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            print(f"--- {self.path}  webhook-id={headers.get('webhook-id')}")
            for name in ("webhook-timestamp", "webhook-signature", "user-agent"):
                print(f"{name}: {headers.get(name)}")
            if args.secret:
                print("signature:", "VALID" if verify(args.secret, headers, body) else "INVALID")
            print(json.dumps(json.loads(body), indent=2), flush=True)
            self.send_response(args.status)
            self.end_headers()

        def log_message(self, *_):
            pass

    print(f"receiving on http://127.0.0.1:{args.port}/", flush=True)
    http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
