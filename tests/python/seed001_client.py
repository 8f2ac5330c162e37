"""A client of seed 001's license API, written from that document (and the
README's "Seed 001" section for what the document leaves open: where the
public key comes from, the error body's shape).

It activates, validates and deactivates a five-by-five key with a SHA-256
machine id, rebuilds each answer's signed bytes with
json.dumps(data, sort_keys=True, separators=(",", ":")) and checks the
RSA-SHA256 signature with `cryptography`; checks every documented status
(403, 404, 409, 422, 429) and the X-RateLimit headers; and never sees a 5xx.

Environment: BASE, TENANT (id), LICENSE_KEY (five by five, one seat),
SUSPENDED_KEY (a suspended five-by-five license), RATE_LIMIT (the
per-minute limit the server was given for client calls). Exits non-zero
on the first failed check, saying which."""

import base64
import hashlib
import json
import os
import secrets
import sys
import time

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

BASE, TENANT, KEY = os.environ["BASE"], os.environ["TENANT"], os.environ["LICENSE_KEY"]
SUSPENDED = os.environ["SUSPENDED_KEY"]
RATE_LIMIT = int(os.environ["RATE_LIMIT"])
checks = 0


def check(condition, what):
    global checks
    if not condition:
        sys.exit(f"FAILED: {what}")
    checks += 1


def machine(name):
    return hashlib.sha256(name.encode()).hexdigest()


def post(endpoint, body):
    response = requests.post(f"{BASE}/license/{endpoint}", json=body, timeout=10)
    check(response.status_code < 500, f"{endpoint} answered {response.status_code}: {response.text}")
    for header in ["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"]:
        check(header in response.headers, f"{endpoint} answered without {header}")
    return response


pem = requests.get(f"{BASE}/license/public-key", params={"tenant_id": TENANT}, timeout=10).json()["public_key"]
public_key = serialization.load_pem_public_key(pem.encode())
check(public_key.key_size >= 2048, "the RSA key has at least 2048 bits")


def verified(response, nonce=None):
    """The signed data of a success, after checking its signature."""
    check(response.status_code == 200, f"expected 200, got {response.status_code}: {response.text}")
    answer = response.json()
    data, signature = answer["data"], base64.b64decode(answer["signature"])
    signed = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    try:
        public_key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        sys.exit(f"FAILED: the signature does not verify over {signed!r}")
    checks_tampered = dict(data, status="active" if data["status"] != "active" else "suspended")
    tampered = json.dumps(checks_tampered, sort_keys=True, separators=(",", ":")).encode()
    try:
        public_key.verify(signature, tampered, padding.PKCS1v15(), hashes.SHA256())
        sys.exit("FAILED: a tampered answer verified")
    except InvalidSignature:
        pass
    if nonce is not None:
        check(data.get("nonce") == nonce, "the nonce comes back inside the signed data")
    return data


laptop, desktop = machine("laptop"), machine("desktop")

# Activate, in lower case: keys are case-insensitive.
nonce = secrets.token_hex(8)
data = verified(post("activate", {"license_key": KEY.lower(), "machine_id": laptop, "nonce": nonce}), nonce)
check(data["license_key"] == KEY.upper(), "data names the license key")
check(data["machine_id"] == laptop, "data names the machine")
check(data["status"] == "active", "an activated license is active")
check(data["activations"] == 1 and data["max_activations"] == 1, "seats used and allowed")
check("expires_at" in data and "issued_at" in data, "expiry and issue time")
check(isinstance(data["features"], list) and data["product"]["id"], "product and features")

# Validate on the activated machine.
nonce = secrets.token_hex(8)
data = verified(post("validate", {"license_key": KEY, "machine_id": laptop, "nonce": nonce}), nonce)
check(data["status"] == "active", "validate: active")

# 403: a machine that was never activated; 409: the one seat is taken.
response = post("validate", {"license_key": KEY, "machine_id": desktop})
check(response.status_code == 403, f"validate on another machine: 403, got {response.status_code}")
check("error" in response.json(), "an error body")
response = post("activate", {"license_key": KEY, "machine_id": desktop})
check(response.status_code == 409, f"activation limit: 409, got {response.status_code}")

# 404: an unknown key.
unknown = "-".join(["ZZZZZ"] * 5)
response = post("validate", {"license_key": unknown, "machine_id": laptop})
check(response.status_code == 404, f"unknown key: 404, got {response.status_code}")

# 403: a suspended license can't be activated.
response = post("activate", {"license_key": SUSPENDED, "machine_id": laptop})
check(response.status_code == 403, f"suspended: 403, got {response.status_code}")

# 422 with field-level details.
for body, field in [
    ({"license_key": KEY, "machine_id": "not-a-sha256"}, "machine_id"),
    ({"license_key": KEY, "machine_id": "ab" * 31}, "machine_id"),
    ({"license_key": "ABCD-EFGH-JKMN-PQRS", "machine_id": laptop}, "license_key"),
    ({"machine_id": laptop}, "license_key"),
    ({"license_key": KEY}, "machine_id"),
    ({"license_key": 12345, "machine_id": laptop}, "license_key"),
]:
    response = post("validate", body)
    check(response.status_code == 422, f"{body}: 422, got {response.status_code}: {response.text}")
    details = response.json()["error"]["details"]
    check(field in details and details[field], f"{body}: details name {field}: {details}")
response = requests.post(f"{BASE}/license/validate", data="{not json", headers={"Content-Type": "application/json"}, timeout=10)
check(response.status_code in (400, 422) and "error" in response.json(), f"broken JSON: {response.status_code}")

# Deactivate frees the seat; the other machine can take it.
data = verified(post("deactivate", {"license_key": KEY, "machine_id": laptop}))
check(data["activations"] == 0, "deactivate frees the seat")
verified(post("activate", {"license_key": KEY, "machine_id": desktop}))

# The limit, counted down, then 429.
response = post("validate", {"license_key": KEY, "machine_id": desktop})
limit = int(response.headers["X-RateLimit-Limit"])
check(limit == RATE_LIMIT, f"X-RateLimit-Limit is {limit}, not {RATE_LIMIT}")
remaining = int(response.headers["X-RateLimit-Remaining"])
# The bucket refills RATE_LIMIT a minute: on a busy machine a token or two
# may come back while this counts down, and those are allowed; a 429
# before what remained is spent is not.
started, sent = time.monotonic(), 0
while True:
    response = post("validate", {"license_key": KEY, "machine_id": desktop})
    sent += 1
    refilled = int((time.monotonic() - started) * RATE_LIMIT / 60) + 1
    if response.status_code == 429 or sent > remaining + refilled:
        break
check(response.status_code == 429, f"past the limit: 429, got {response.status_code} after {sent} calls")
check(sent > remaining, f"{remaining} calls remained, yet the 429 came after {sent}")
check(response.headers["X-RateLimit-Remaining"] == "0", "nothing remains")
check("error" in response.json(), "a 429 in the error shape")

print(f"seed 001 client: {checks} checks passed")
