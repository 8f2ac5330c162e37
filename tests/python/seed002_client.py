"""A client of seed 002's license API, written from that document (and the
README's "Seed 002" section for who may call deactivate and status).

It validates (which activates the device), reads the status with its
active devices, deactivates one device and then all, checks that every
validation failure is the same generic 400, and runs into validate's
limit of 5 a minute: a 429 with Retry-After for the first block of the
progressive series (2 minutes). X-RateLimit-Remaining is on every answer;
nothing is a 5xx.

Environment: BASE, LICENSE_KEY (one seat), OWNER_KEY (the Bearer key of
the license's owner), OTHER_TENANT_KEY (an admin key of another tenant).
Exits non-zero on the first failed check, saying which."""

import os
import sys

import requests

BASE, KEY = os.environ["BASE"], os.environ["LICENSE_KEY"]
OWNER = {"Authorization": f"Bearer {os.environ['OWNER_KEY']}"}
OTHER = {"Authorization": f"Bearer {os.environ['OTHER_TENANT_KEY']}"}
GENERIC = {"statusCode": 400, "statusMessage": "Invalid license key or validation failed"}
checks = 0


def check(condition, what):
    global checks
    if not condition:
        sys.exit(f"FAILED: {what}")
    checks += 1


def call(method, endpoint, **kwargs):
    response = requests.request(method, f"{BASE}/api/licenses/{endpoint}", timeout=10, **kwargs)
    check(response.status_code < 500, f"{endpoint} answered {response.status_code}: {response.text}")
    check("X-RateLimit-Remaining" in response.headers, f"{endpoint} answered without X-RateLimit-Remaining")
    return response


def validate(body):
    return call("POST", "validate", json=body)


# Status and deactivate are for the owner (or an admin) only.
check(call("GET", "status", params={"license_key": KEY}).status_code == 401, "status without a key: 401")
response = call("GET", "status", params={"license_key": KEY}, headers=OTHER)
check(response.status_code == 404, f"another tenant's key: 404, got {response.status_code}")
check(set(response.json()) == {"statusCode", "statusMessage"}, f"error shape: {response.json()}")

# Validate activates the device.
response = validate({"license_key": KEY, "device_id": "device_abc123"})
check(response.status_code == 200, f"validate: {response.status_code} {response.text}")
check(response.headers["X-RateLimit-Remaining"] == "4", "4 validations remain this minute")
answer = response.json()
check(answer["valid"] is True, "valid")
license = answer["license"]
check(license["status"] == "active" and license["current_activations"] == 1, f"activated: {license}")
check(set(license["product"]) == {"id", "name", "features"}, f"product: {license['product']}")
check(license["activation_date"] and "expiration_date" in license, "dates")

response = call("GET", "status", params={"license_key": KEY}, headers=OWNER)
check(response.status_code == 200, f"status: {response.status_code} {response.text}")
status = response.json()
shown = status["license"]
check(shown["license_key"] == KEY and shown["activation_limit"] == 1, f"status license: {shown}")
check(shown["current_activations"] == 1 and shown["available_activations"] == 0, "seats")
check(shown["is_active"] is True and shown["is_expired"] is False, "flags")
check(isinstance(shown["days_until_expiration"], int) and shown["days_until_expiration"] > 300, "days left")
check(shown["user"]["id"] and "email" in shown["user"], f"user: {shown['user']}")
devices = status["active_devices"]
check(len(devices) == 1 and devices[0]["device_id"] == "device_abc123", f"devices: {devices}")
check(devices[0]["id"] and devices[0]["activated_at"] and devices[0]["ip_address"] == "127.0.0.1", f"device: {devices[0]}")

# Every validation failure is the same 400: a second device (no seat),
# an unknown key, a malformed one.
for body in [
    {"license_key": KEY, "device_id": "device_other"},
    {"license_key": "ABCD-EFGH-JKMN-PQRS"},
    {"license_key": "not a key", "device_id": "x"},
]:
    response = validate(body)
    check(response.status_code == 400 and response.json() == GENERIC, f"{body}: {response.status_code} {response.text}")

# Validate without a device checks the license alone.
response = validate({"license_key": KEY})
check(response.status_code == 200 and response.json()["valid"] is True, f"no device: {response.text}")
check(response.headers["X-RateLimit-Remaining"] == "0", "the minute's budget is spent")

# The sixth call this minute: blocked, 2 minutes for a first offence.
response = validate({"license_key": KEY, "device_id": "device_abc123"})
check(response.status_code == 429, f"past 5 a minute: 429, got {response.status_code}")
retry = int(response.headers["Retry-After"])
check(100 <= retry <= 120, f"a first block of about 2 minutes, Retry-After {retry}")
check(response.json()["statusCode"] == 429, f"429 shape: {response.json()}")
response = validate({"license_key": KEY, "device_id": "device_abc123"})
check(response.status_code == 429 and int(response.headers["Retry-After"]) <= retry, "still blocked")

# Other endpoints keep their own budgets.
response = call("POST", "deactivate", json={"license_key": KEY, "device_id": "device_abc123"}, headers=OWNER)
check(response.status_code == 200, f"deactivate: {response.status_code} {response.text}")
answer = response.json()
check(answer["success"] is True and answer["remaining_activations"] == 1 and answer["message"], f"deactivate: {answer}")
response = call("POST", "deactivate", json={"license_key": KEY}, headers=OWNER)
check(response.status_code == 200 and response.json()["success"] is True, f"deactivate all: {response.text}")
response = call("POST", "deactivate", json={"license_key": KEY, "device_id": "device_abc123"}, headers=OWNER)
check(response.status_code == 404, f"a device with no seat: 404, got {response.status_code}")
response = call("POST", "deactivate", json={"license_key": KEY})
check(response.status_code == 401, f"deactivate without a key: 401, got {response.status_code}")
response = call("GET", "status", params={"license_key": KEY}, headers=OWNER)
check(response.json()["active_devices"] == [], "no device left")

print(f"seed 002 client: {checks} checks passed")
