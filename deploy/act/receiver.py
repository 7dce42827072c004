"""Example webhook receiver for `cxpipe act`: verify, drop repeats, act (here: print).

    CX_ACT_RECEIVER_SECRET=... python deploy/act/receiver.py --port 8090

Standard library only, so it can be copied into any service. Verification, step by step:
1. read `X-CX-Signature: t=<unix>,v1=<hex>` and the RAW body (before any JSON parsing);
2. reject a `t` more than 5 minutes from your clock (a captured request replayed later);
3. compute HMAC-SHA256(secret, f"{t}." + body) and compare to `v1` in constant time;
4. drop an `Idempotency-Key` (= signal_id) you have already acted on (act retries, and in one
   narrow crash window may re-send); answer 2xx so it is not retried again.
Answer 4xx only for requests that can never succeed (act dead-letters them at once); 5xx or a
timeout makes act retry with backoff.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE = 300
SECRET = os.environ.get("CX_ACT_RECEIVER_SECRET", "")
seen: set[str] = set()  # use your database in production (with the same horizon as act's)


def verified(header: str, body: bytes, now: float) -> bool:
    fields: dict[str, list[str]] = {}
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        fields.setdefault(name, []).append(value)
    try:
        (stamp,) = fields["t"]
        if abs(now - int(stamp)) > TOLERANCE:
            return False
    except (KeyError, ValueError):
        return False
    expected = hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, given) for given in fields.get("v1", []))


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not verified(self.headers.get("X-CX-Signature", ""), body, time.time()):
            self.send_response(401)
            self.end_headers()
            return
        key = self.headers.get("Idempotency-Key", "")
        if key not in seen:
            seen.add(key)
            signal = json.loads(body)
            print(f"{self.path}: {signal['signal_type']} {signal['signal_id']}", flush=True)
        self.send_response(204)
        self.end_headers()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    if len(SECRET) < 16:
        raise SystemExit("set CX_ACT_RECEIVER_SECRET (at least 16 characters)")
    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
