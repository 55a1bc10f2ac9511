"""`make demo`: both client flows against a running `make run`.

1. Poll: queue an email job, then follow its status until it is final.
2. Push: send an SMS whose result arrives as a signed webhook at a small local receiver,
   which verifies the signature with the standardwebhooks library before trusting it.
"""

from __future__ import annotations

import json
import queue
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

import httpx
from standardwebhooks.webhooks import WebhookVerificationError

from activities.signing import verify
from common.settings import get_settings

FINAL = {"completed", "failed", "cancelled"}


def poll_flow(api: httpx.Client) -> None:
    print("1) Poll: POST /jobs/email, then GET its statusUrl until the job is final")
    accepted = (
        api.post(
            "/jobs/email",
            json={"to": "ada@example.com", "subject": "Herald demo", "body": "Hello from the Herald demo."},
        )
        .raise_for_status()
        .json()
    )
    print(f"   202 {accepted}")
    seen = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = api.get(accepted["statusUrl"]).raise_for_status().json()
        if status["status"] != seen:
            seen = status["status"]
            print(f"   status: {seen} (attempts {status['attempts']}/{status['maxAttempts']})")
        if seen in FINAL:
            return
        time.sleep(0.3)
    raise SystemExit("   the job did not finish in 30 s: is the worker running?")


def push_flow(api: httpx.Client, secrets: list[str]) -> None:
    print("2) Push: POST /notify/sms with webhookUrl; the result arrives as a signed webhook")
    arrived: queue.Queue[tuple[dict, dict]] = queue.Queue()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                # A receiver must verify before it trusts: any secret that is active may have signed.
                payload = verify(secrets, body, headers)
            except WebhookVerificationError:
                self.send_response(401)
                self.end_headers()
                return
            self.send_response(204)
            self.end_headers()
            arrived.put((payload, headers))

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/herald-callback"
    try:
        accepted = (
            api.post("/notify/sms", json={"phone": "+14155550100", "message": "Herald demo: 123456", "webhookUrl": url})
            .raise_for_status()
            .json()
        )
        print(f"   202 {accepted}")
        try:
            payload, headers = arrived.get(timeout=30)
        except queue.Empty:
            raise SystemExit("   no callback arrived in 30 s") from None
        print(f"   verified webhook {headers['webhook-id']} at {url}:")
        print("   " + json.dumps(payload))
    finally:
        server.shutdown()


def main() -> int:
    settings = get_settings()
    base = f"http://{settings.api_host}:{settings.api_port}"
    key = next(iter(settings.client_keys()), "herald-dev-key")
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10) as api:
        try:
            api.get("/readyz").raise_for_status()
        except httpx.HTTPError as exc:
            print(f"Herald is not running at {base} ({exc}); start it with `make run`.", file=sys.stderr)
            return 1
        poll_flow(api)
        push_flow(api, settings.webhook_secrets())
    return 0


if __name__ == "__main__":
    sys.exit(main())
