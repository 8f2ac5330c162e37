"""A client of seed 003's V2 License Server, written from that document.

It runs the client API with the tenant's system key in X-API-Key
(activate, verify, info), the versions API (check, latest), and the
document's Python sample client (`LicenseClient`, copied as printed, with
the `import socket` its code needs) against `/api/v1/activate` and
`/api/v1/validate` with no key. Each answer is checked field by field
against the document's examples, and the errors against its two shapes:
the exact 401 body, and {"error": {"code", "message", "details":
{"field", "reason"}}} with the document's status codes.

Environment: BASE, SYSTEM_KEY (the tenant's), LICENSE_KEY (a license of
the tenant's product PRODUCT_CODE, two seats, no customer needed),
CUSTOMER_NAME (the license's customer's name), and PRODUCT_CODE, whose
releases are 1.0.0 and 1.1.0 (download_url and release_notes set, not
mandatory). Exits non-zero on the first failed check, saying which."""

import os
import re
import socket
import sys

import requests

BASE, SYSTEM_KEY = os.environ["BASE"], os.environ["SYSTEM_KEY"]
KEY, PRODUCT, CUSTOMER = os.environ["LICENSE_KEY"], os.environ["PRODUCT_CODE"], os.environ["CUSTOMER_NAME"]
HEADERS = {"X-API-Key": SYSTEM_KEY}
INSTANT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
DATE = re.compile(r"^\d{4}-\d\d-\d\d$")
checks = 0


def check(condition, what):
    global checks
    if not condition:
        print(f"FAILED: {what}")
        sys.exit(1)
    checks += 1


def error_shape(response, status, field=None, code=None):
    """The document's error body, with `status`; `field` and `code` when given."""
    check(response.status_code == status, f"status {status}, got {response.status_code}: {response.text}")
    body = response.json()
    check(set(body) == {"error"}, f"only `error`: {body}")
    error = body["error"]
    check(set(error) == {"code", "message", "details"}, f"error has code, message, details: {error}")
    check(isinstance(error["code"], str) and error["code"] == error["code"].upper(), f"an upper-case code: {error}")
    check(isinstance(error["message"], str) and error["message"], f"a message: {error}")
    check(set(error["details"]) == {"field", "reason"}, f"details has field and reason: {error}")
    if field is not None:
        check(error["details"]["field"] == field, f"details.field {field}: {error}")
    if code is not None:
        check(error["code"] == code, f"code {code}: {error}")
    return error


# --- Authentication: the exact 401 body -------------------------------------
UNAUTHORIZED = {"error": "Invalid or missing API key", "code": "INVALID_API_KEY", "status": 401}
for headers in ({}, {"X-API-Key": "AF-2025-XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"}, {"X-API-Key": "nonsense"}):
    r = requests.post(f"{BASE}/api/license/verify", headers=headers,
                      json={"license_key": KEY, "hardware_hash": "hw-1", "app_version": "1.0.0"})
    check(r.status_code == 401 and r.json() == UNAUTHORIZED, f"401 body exactly, for {headers}: {r.status_code} {r.text}")

# --- Activate ---------------------------------------------------------------
r = requests.post(f"{BASE}/api/license/activate", headers=HEADERS, json={
    "license_key": KEY, "hardware_hash": "unique-hardware-identifier",
    "machine_name": "DESKTOP-ABC123", "app_version": "1.0.0"})
check(r.status_code == 200, f"activate 200: {r.status_code} {r.text}")
body = r.json()
check(body["message"] == "License activated successfully", f"activate message: {body}")
activation = body["activation"]
check(set(activation) == {"id", "license_key", "hardware_hash", "machine_name", "activated_at",
                          "last_heartbeat", "is_active"}, f"activation fields: {activation}")
check(isinstance(activation["id"], int), f"activation id is an integer: {activation}")
check(activation["license_key"] == KEY, f"activation license_key: {activation}")
check(activation["hardware_hash"] == "unique-hardware-identifier", f"hardware_hash echoed: {activation}")
check(activation["machine_name"] == "DESKTOP-ABC123", f"machine_name: {activation}")
check(INSTANT.match(activation["activated_at"]) and INSTANT.match(activation["last_heartbeat"]), f"instants: {activation}")
check(activation["is_active"] is True, f"is_active: {activation}")
again = requests.post(f"{BASE}/api/license/activate", headers=HEADERS, json={
    "license_key": KEY, "hardware_hash": "unique-hardware-identifier",
    "machine_name": "DESKTOP-ABC123", "app_version": "1.0.0"}).json()
check(again["activation"]["id"] == activation["id"], f"activating again answers the same activation: {again}")

# --- Verify -----------------------------------------------------------------
r = requests.post(f"{BASE}/api/license/verify", headers=HEADERS, json={
    "license_key": KEY, "hardware_hash": "unique-hardware-identifier", "app_version": "1.0.0"})
check(r.status_code == 200, f"verify 200: {r.status_code} {r.text}")
body = r.json()
check(set(body) == {"valid", "message", "license", "update_available", "latest_version"}, f"verify fields: {body}")
check(body["valid"] is True and body["message"] == "License is valid", f"verify valid: {body}")
check(set(body["license"]) == {"key", "valid_until", "max_users"}, f"verify license fields: {body}")
check(body["license"]["key"] == KEY, f"verify license key: {body}")
check(DATE.match(body["license"]["valid_until"]), f"valid_until is a date: {body}")
check(body["license"]["max_users"] == 10, f"max_users: {body}")
check(body["update_available"] is True and body["latest_version"] == "1.1.0", f"update from 1.0.0: {body}")
current = requests.post(f"{BASE}/api/license/verify", headers=HEADERS, json={
    "license_key": KEY, "hardware_hash": "unique-hardware-identifier", "app_version": "1.1.0"}).json()
check(current["update_available"] is False and current["latest_version"] == "1.1.0", f"up to date: {current}")

# --- Info -------------------------------------------------------------------
r = requests.get(f"{BASE}/api/license/info/{KEY}", headers=HEADERS)
check(r.status_code == 200, f"info 200: {r.status_code} {r.text}")
body = r.json()
check(set(body) == {"license", "activations"}, f"info fields: {body}")
lic = body["license"]
check(set(lic) == {"id", "key", "customer_name", "type", "valid_from", "valid_until", "max_activations",
                   "max_users", "is_active"}, f"info license fields: {lic}")
check(isinstance(lic["id"], int) and lic["key"] == KEY, f"info id and key: {lic}")
check(lic["customer_name"] == CUSTOMER, f"customer_name: {lic}")
check(lic["type"] == "subscription", f"a license with an end date is a subscription: {lic}")
check(DATE.match(lic["valid_from"]) and DATE.match(lic["valid_until"]), f"dates: {lic}")
check(lic["max_activations"] == 2 and lic["max_users"] == 10 and lic["is_active"] is True, f"info numbers: {lic}")
check(len(body["activations"]) == 1, f"one activation: {body}")
act = body["activations"][0]
check(set(act) == {"id", "hardware_hash", "machine_name", "activated_at", "last_heartbeat", "is_active"},
      f"activation fields: {act}")
check(act["id"] == activation["id"] and act["machine_name"] == "DESKTOP-ABC123" and act["is_active"] is True,
      f"the activation: {act}")

# --- The document's sample client, exactly as printed -----------------------
class LicenseClient:
    def __init__(self, base_url):
        self.base_url = base_url

    def activate(self, license_key, hardware_id):
        response = requests.post(
            f"{self.base_url}/api/v1/activate",
            json={
                "license_key": license_key,
                "hardware_id": hardware_id,
                "machine_name": socket.gethostname(),
                "app_version": "1.0.0"
            }
        )
        return response.json()

    def validate(self, license_key, activation_id, hardware_id):
        response = requests.post(
            f"{self.base_url}/api/v1/validate",
            json={
                "license_key": license_key,
                "activation_id": activation_id,
                "hardware_id": hardware_id,
                "app_version": "1.0.0"
            }
        )
        return response.json()


client = LicenseClient(BASE)
activated = client.activate(KEY, "sample-hardware-2")
check(activated.get("message") == "License activated successfully", f"sample activate: {activated}")
sample_id = activated["activation"]["id"]
check(isinstance(sample_id, int) and sample_id != activation["id"], f"a second activation: {activated}")
validated = client.validate(KEY, sample_id, "sample-hardware-2")
check(validated.get("valid") is True, f"sample validate: {validated}")
wrong = client.validate(KEY, sample_id + 1000, "sample-hardware-2")
check(wrong["error"]["details"]["field"] == "activation_id", f"another activation's id is refused: {wrong}")
full = client.activate(KEY, "sample-hardware-3")
check(full["error"]["code"] == "SEAT_LIMIT_REACHED", f"a third machine on two seats: {full}")

# --- Versions ---------------------------------------------------------------
r = requests.post(f"{BASE}/api/version/check", headers=HEADERS,
                  json={"current_version": "1.0.0", "license_key": KEY})
check(r.status_code == 200, f"version check 200: {r.status_code} {r.text}")
body = r.json()
check(body == {"update_available": True, "latest_version": "1.1.0",
               "download_url": "https://example.com/download/v1.1.0",
               "release_notes": "Bug fixes and performance improvements", "is_mandatory": False},
      f"version check: {body}")
r = requests.get(f"{BASE}/api/version/latest", headers=HEADERS, params={"product": PRODUCT})
check(r.status_code == 200, f"version latest 200: {r.status_code} {r.text}")
body = r.json()
check(set(body) == {"version", "release_date", "download_url", "release_notes", "is_mandatory"}, f"latest: {body}")
check(body["version"] == "1.1.0" and DATE.match(body["release_date"]) and body["is_mandatory"] is False,
      f"latest release: {body}")

# --- Errors in the document's shape -----------------------------------------
r = requests.post(f"{BASE}/api/license/verify", headers=HEADERS,
                  json={"license_key": "not a key", "hardware_hash": "hw", "app_version": "1.0.0"})
error_shape(r, 400, field="license_key", code="INVALID_LICENSE")
r = requests.post(f"{BASE}/api/license/verify", headers=HEADERS,
                  json={"license_key": "ZZZZ-ZZZZ-ZZZZ-ZZZZ", "hardware_hash": "hw", "app_version": "1.0.0"})
check(error_shape(r, 404, code="INVALID_LICENSE")["details"]["reason"] == "not_found", "an unknown key is not_found")
r = requests.post(f"{BASE}/api/license/verify", headers=HEADERS, json={"license_key": KEY, "app_version": "1.0.0"})
error_shape(r, 400, field="hardware_hash")
r = requests.post(f"{BASE}/api/license/activate", headers=HEADERS, json={"license_key": KEY, "hardware_hash": 7})
error_shape(r, 400, field="hardware_hash")
r = requests.post(f"{BASE}/api/license/verify", headers=HEADERS,
                  json={"license_key": KEY, "hardware_hash": "never-activated", "app_version": "1.0.0"})
error_shape(r, 403)
r = requests.post(f"{BASE}/api/version/check", headers=HEADERS, json={"current_version": "one", "license_key": KEY})
error_shape(r, 400, field="current_version")
r = requests.get(f"{BASE}/api/license/info/ZZZZ-ZZZZ-ZZZZ-ZZZZ", headers=HEADERS)
error_shape(r, 404, code="INVALID_LICENSE")
r = requests.get(f"{BASE}/api/version/latest", headers=HEADERS, params={"product": "NOPE"})
error_shape(r, 404, field="product")
r = requests.post(f"{BASE}/api/license/verify", headers={**HEADERS, "Content-Type": "application/json"},
                  data="not json", timeout=10)
error_shape(r, 400)

print(f"all {checks} checks passed")
