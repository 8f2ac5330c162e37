"""A client of seed 004's license verification API, written from that
document (and the README's "Seed 004" section for the paths, which the
document does not give).

With the tenant's API key as a Bearer token it fetches the Ed25519 public
key, activates (a JWT license token, verified offline with PyJWT and the
bundled key), verifies with the cached token alone, heartbeats, hits the
seat limit (409), deactivates, and checks the documented errors: 400, 401,
403 (a blocked device), 404, 409 and 429 (the transfer limit), each as
{"ok": false, "error": "..."}, never a 5xx.

Environment: BASE, API_KEY (the tenant's client key), PRODUCT_ID,
LICENSE_KEY (two seats, a transfer limit of one deactivation), ADMIN_KEY
(to block a device) and LICENSE_ID. Exits non-zero on the first failed
check, saying which."""

import os
import sys

import jwt
import requests
from cryptography.hazmat.primitives import serialization

BASE, API_KEY, PRODUCT = os.environ["BASE"], os.environ["API_KEY"], os.environ["PRODUCT_ID"]
KEY, ADMIN, LICENSE_ID = os.environ["LICENSE_KEY"], os.environ["ADMIN_KEY"], os.environ["LICENSE_ID"]
HEADERS = {"Authorization": f"Bearer {API_KEY}"}
checks = 0


def check(condition, what):
    global checks
    if not condition:
        sys.exit(f"FAILED: {what}")
    checks += 1


def post(endpoint, body, headers=HEADERS):
    response = requests.post(f"{BASE}/v1/{endpoint}", json=body, headers=headers, timeout=10)
    check(response.status_code < 500, f"{endpoint} answered {response.status_code}: {response.text}")
    return response


def failed(response, status, what):
    check(response.status_code == status, f"{what}: {status}, got {response.status_code}: {response.text}")
    body = response.json()
    check(body.get("ok") is False and isinstance(body.get("error"), str) and body["error"], f"{what}: error shape {body}")


# The public key, bundled with the client; tokens verify offline with it.
response = requests.get(f"{BASE}/v1/public-key", headers=HEADERS, timeout=10)
check(response.status_code == 200, f"public key: {response.status_code} {response.text}")
public_key = serialization.load_pem_public_key(response.json()["public_key"].encode())


def claims_of(token):
    return jwt.decode(token, public_key, algorithms=["EdDSA"], options={"verify_aud": False})


activation = {"license_key": KEY, "product_id": PRODUCT, "machine_id": "machine-a", "machine_name": "Build server"}
response = post("activate", activation)
check(response.status_code == 200, f"activate: {response.status_code} {response.text}")
answer = response.json()
check(answer["ok"] is True, "ok: true")
token = answer["token"]
claims = claims_of(token)
check(claims["licenseKey"] == KEY and claims["productId"] == PRODUCT, "the token names the key and product")
check(answer["activation"]["machine_name"] == "Build server", "the activation keeps the machine name")

# Verify with the cached token only: key and product come from it.
response = post("verify", {"machine_id": "machine-a", "token": token})
check(response.status_code == 200, f"verify with a token: {response.status_code} {response.text}")
fresh = response.json()["token"]
check(claims_of(fresh)["sub"] == claims["sub"], "a fresh token for the same license")
response = post("verify", {"license_key": KEY, "machine_id": "machine-a"})
check(response.status_code == 200, f"verify with the key: {response.status_code}")

# A forged token is refused.
forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
failed(post("verify", {"machine_id": "machine-a", "token": forged}), 400, "a forged token")

response = post("heartbeat", {"license_key": KEY, "machine_id": "machine-a"})
check(response.status_code == 200 and response.json()["activation"]["last_seen_at"], f"heartbeat: {response.text}")

# Seats: the second machine fits, the third is 409.
response = post("activate", dict(activation, machine_id="machine-b", machine_name="Laptop"))
check(response.status_code == 200, f"a second seat: {response.text}")
device_b = response.json()["activation"]["id"]
failed(post("activate", dict(activation, machine_id="machine-c")), 409, "seat limit")

# Verify and heartbeat need an activation on the device.
failed(post("verify", {"license_key": KEY, "machine_id": "machine-c"}), 403, "verify without an activation")
failed(post("heartbeat", {"license_key": KEY, "machine_id": "machine-c"}), 403, "heartbeat without an activation")

# A device blocked by the vendor gets 403.
admin = {"Authorization": f"Bearer {ADMIN}"}
blocked = requests.post(f"{BASE}/api/v1/licenses/{LICENSE_ID}/devices/{device_b}/block", headers=admin, timeout=10)
check(blocked.status_code == 200, f"block: {blocked.status_code} {blocked.text}")
failed(post("heartbeat", {"license_key": KEY, "machine_id": "machine-b"}), 403, "heartbeat of a blocked device")
failed(post("verify", {"license_key": KEY, "machine_id": "machine-b"}), 403, "verify of a blocked device")

# Deactivate frees a seat; the transfer limit (one) then answers 429.
response = post("deactivate", {"license_key": KEY, "machine_id": "machine-a"})
check(response.status_code == 200 and response.json()["ok"] is True, f"deactivate: {response.text}")
check(post("activate", dict(activation, machine_id="machine-c")).status_code == 200, "the freed seat is taken")
failed(post("deactivate", {"license_key": KEY, "machine_id": "machine-c"}), 429, "transfer limit")

# The documented errors.
failed(post("activate", dict(activation, license_key="ABCD-EFGH-JKMN-PQRS")), 404, "unknown key")
failed(post("activate", {"product_id": PRODUCT, "machine_id": "m"}), 400, "missing license_key")
failed(post("activate", dict(activation, product_id=None)), 400, "missing product_id")
failed(post("verify", {"license_key": KEY}), 400, "missing machine_id")
failed(post("activate", dict(activation, license_key=7)), 400, "a number for a key")
failed(post("activate", dict(activation, product_id="00000000-0000-4000-8000-000000000000")), 403, "another product")
failed(post("activate", activation, headers={}), 401, "no API key")
failed(post("activate", activation, headers={"Authorization": "Bearer kl_nope"}), 401, "a wrong API key")
failed(requests.get(f"{BASE}/v1/public-key", timeout=10), 401, "public key without a key")

print(f"seed 004 client: {checks} checks passed")
