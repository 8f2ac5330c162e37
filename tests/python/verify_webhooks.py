"""Verifies webhook deliveries the way a receiver does, with the stock
`standardwebhooks` package. Usage: verify_webhooks.py FILE, where FILE
holds a JSON object {"secrets": [...], "deliveries": [{"headers": {...},
"body": "..."}]}: each delivery must verify with at least one of the
secrets (several during a rotation), and the same delivery with its body
changed by one byte must not. Prints each verified payload's webhook-id and
type; exits 1 with the reason at the first failure."""

import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

with open(sys.argv[1]) as file:
    given = json.load(file)

hooks = [Webhook(secret) for secret in given["secrets"]]
for number, delivery in enumerate(given["deliveries"]):
    headers, body = delivery["headers"], delivery["body"]
    payload = None
    for hook in hooks:
        try:
            payload = hook.verify(body, headers)
            break
        except WebhookVerificationError:
            continue
    if payload is None:
        print(f"delivery {number} ({headers.get('webhook-id')}) does not verify with any secret")
        sys.exit(1)
    tampered = body.replace('"', "'", 1)
    for hook in hooks:
        try:
            hook.verify(tampered, headers)
            print(f"delivery {number}: a tampered body verified")
            sys.exit(1)
        except WebhookVerificationError:
            pass
    print(headers["webhook-id"], payload.get("type", payload.get("event")))
