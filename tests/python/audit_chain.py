"""An auditor's own check of a license's hash chain, written from the
README ("The event log and audit"): every event's hash is rebuilt from
the history API and must be the one keyledger gives, and a changed
field must not rebuild to it.

Environment: BASE, KEY (may read the license), LICENSE_ID. Exits 1 at the
first mismatch; prints how many events were checked."""

import hashlib
import json
import os
import sys

import requests

BASE, KEY, LICENSE_ID = os.environ["BASE"], os.environ["KEY"], os.environ["LICENSE_ID"]


def chain_hash(previous, event):  # as the README shows it
    content = {"aggregate_id": event["aggregateId"], "sequence": event["sequence"],
               "event_id": event["eventId"], "event_type": event["type"],
               "event_version": event["version"], "payload": {event["type"]: event["data"]},
               "metadata": event["metadata"]}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((previous + "\n" + canonical).encode()).hexdigest()


events, after = [], None
while True:
    query = {"limit": 2} | ({"after": after} if after is not None else {})
    page = requests.get(f"{BASE}/api/v1/licenses/{LICENSE_ID}/events", params=query,
                        headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    if page.status_code != 200:
        sys.exit(f"history answered {page.status_code}: {page.text}")
    events += page.json()["events"]
    after = page.json().get("nextAfter")
    if after is None:
        break

previous = ""
for event in events:
    if chain_hash(previous, event) != event["hash"]:
        sys.exit(f"event {event['sequence']} ({event['type']}) does not rebuild to its hash")
    changed = dict(event, data=dict(event["data"], injected=True))
    if chain_hash(previous, changed) == event["hash"]:
        sys.exit("a changed event rebuilt to the same hash")
    previous = event["hash"]
if len(events) < 3:
    sys.exit(f"only {len(events)} events to check")
print(f"{len(events)} events checked")
