"""A client of seed 003's V2 License Server, written from that document.

It runs the client API with the tenant's system key in X-API-Key
(activate, verify, info), the versions API (check, latest), and the
document's Python sample client (`LicenseClient`, copied as printed, with
the `import socket` its code needs) against `/api/v1/activate` and
`/api/v1/validate` with no key. Each answer is checked field by field
against the document's examples, and the errors against its two shapes:
the exact 401 body, and {"error": {"code", "message", "details":
{"field", "reason"}}} with the document's status codes.

Environment: BASE, SYSTEM_KEY (the tenant's), ADMIN_KEY (a tenant admin's
native key, to add resources to the pool), LICENSE_KEY (a license of
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
ADMIN = {"Authorization": f"Bearer {os.environ['ADMIN_KEY']}"}
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

# --- Admin API: customers ---------------------------------------------------
r = requests.get(f"{BASE}/api/customers", headers=HEADERS, params={"q": "acme", "page": 1})
check(r.status_code == 200, f"customers 200: {r.status_code} {r.text}")
body = r.json()
check(set(body) == {"results", "pagination"} and body["pagination"] == {"more": False}, f"select2 shape: {body}")
check(len(body["results"]) == 1, f"one ACME customer: {body}")
customer = body["results"][0]
check(isinstance(customer["id"], int) and customer["text"] == f"{CUSTOMER} - admin@acme.com", f"id and text: {customer}")
CUSTOMER_ID = customer["id"]
r = requests.get(f"{BASE}/api/customer/{CUSTOMER_ID}/licenses", headers=HEADERS)
check(r.status_code == 200, f"customer licenses 200: {r.status_code} {r.text}")
licenses = r.json()["licenses"]
check(len(licenses) == 1, f"one license: {licenses}")
check(set(licenses[0]) == {"id", "license_key", "type", "status", "valid_until", "max_activations",
                           "current_activations"}, f"fields: {licenses[0]}")
check(licenses[0]["license_key"] == KEY and licenses[0]["status"] == "active"
      and licenses[0]["max_activations"] == 2 and licenses[0]["current_activations"] == 2, f"the license: {licenses[0]}")
r = requests.get(f"{BASE}/api/customer/{CUSTOMER_ID}/quick-stats", headers=HEADERS)
check(r.json() == {"total_licenses": 1, "active_licenses": 1, "total_activations": 2, "total_users": 10},
      f"quick stats: {r.text}")
error_shape(requests.get(f"{BASE}/api/customer/abc/licenses", headers=HEADERS), 400, field="customer_id")
error_shape(requests.get(f"{BASE}/api/customer/999999/quick-stats", headers=HEADERS), 404)
error_shape(requests.get(f"{BASE}/api/customers", headers=HEADERS, params={"page": 0}), 400, field="page")

# --- Admin API: generate, toggle, quick edit --------------------------------
r = requests.post(f"{BASE}/api/generate-license-key", headers=HEADERS)
check(r.status_code == 200 and re.match(r"^[A-Z0-9]{4}(-[A-Z0-9]{4}){3}$", r.json()["license_key"]),
      f"a new key: {r.status_code} {r.text}")
PLAIN_ID = r.json()["id"]
r = requests.post(f"{BASE}/api/generate-license-key", headers=HEADERS, json={
    "product": PRODUCT, "type": "trial", "valid_until": "2030-01-01", "max_activations": 3, "max_users": 5,
    "customer_id": CUSTOMER_ID})
check(r.status_code == 200, f"generate 200: {r.status_code} {r.text}")
NEW_KEY, NEW_ID = r.json()["license_key"], r.json()["id"]
check(isinstance(NEW_ID, int), f"its integer id: {r.text}")
lic = requests.get(f"{BASE}/api/license/info/{NEW_KEY}", headers=HEADERS).json()["license"]
check((lic["type"], lic["valid_until"], lic["max_activations"], lic["max_users"], lic["customer_name"], lic["id"])
      == ("trial", "2030-01-01", 3, 5, CUSTOMER, NEW_ID), f"the generated license: {lic}")
r = requests.post(f"{BASE}/api/license/{NEW_ID}/toggle", headers=HEADERS)
check(r.json() == {"success": True, "is_active": False, "message": "License deactivated successfully"}, f"toggle off: {r.text}")
r = requests.post(f"{BASE}/api/license/{NEW_ID}/toggle", headers=HEADERS)
check(r.json() == {"success": True, "is_active": True, "message": "License activated successfully"}, f"toggle on: {r.text}")
r = requests.post(f"{BASE}/api/license/{NEW_ID}/quick-edit", headers=HEADERS,
                  json={"valid_until": "2031-02-03", "max_activations": 4, "max_users": 7})
check(r.json() == {"success": True, "message": "License updated successfully"}, f"quick edit: {r.text}")
lic = requests.get(f"{BASE}/api/license/info/{NEW_KEY}", headers=HEADERS).json()["license"]
check((lic["valid_until"], lic["max_activations"], lic["max_users"]) == ("2031-02-03", 4, 7), f"edited: {lic}")
error_shape(requests.post(f"{BASE}/api/license/{NEW_ID}/quick-edit", headers=HEADERS, json={"valid_until": "soon"}),
            400, field="valid_until")
error_shape(requests.post(f"{BASE}/api/license/abc/toggle", headers=HEADERS), 400, field="license_id")
error_shape(requests.post(f"{BASE}/api/license/999999/toggle", headers=HEADERS), 404)

# --- Admin API: devices -----------------------------------------------------
r = requests.post(f"{BASE}/api/license/{NEW_ID}/register-device", headers=HEADERS,
                  json={"hardware_hash": "server-hw-1", "machine_name": "SRV-001", "app_version": "1.1.0"})
check(r.status_code == 200 and r.json()["success"] is True and isinstance(r.json()["device_id"], int)
      and r.json()["message"] == "Device registered successfully", f"register device: {r.text}")
DEVICE = r.json()["device_id"]
devices = requests.get(f"{BASE}/api/license/{NEW_ID}/devices", headers=HEADERS).json()["devices"]
check(len(devices) == 1 and set(devices[0]) == {"id", "hardware_hash", "machine_name", "activated_at",
                                                "last_heartbeat", "is_active", "app_version"}, f"devices: {devices}")
check((devices[0]["id"], devices[0]["machine_name"], devices[0]["is_active"], devices[0]["app_version"])
      == (DEVICE, "SRV-001", True, "1.1.0"), f"the device: {devices}")
r = requests.post(f"{BASE}/api/license/{NEW_ID}/deactivate-device/{DEVICE}", headers=HEADERS)
check(r.json() == {"success": True, "message": "Device deactivated successfully"}, f"deactivate device: {r.text}")
devices = requests.get(f"{BASE}/api/license/{NEW_ID}/devices", headers=HEADERS).json()["devices"]
check(devices[0]["is_active"] is False, f"a past device: {devices}")
error_shape(requests.post(f"{BASE}/api/license/{NEW_ID}/deactivate-device/999999", headers=HEADERS), 404)

# --- Admin API: bulk --------------------------------------------------------
r = requests.post(f"{BASE}/api/licenses/bulk-deactivate", headers=HEADERS, json={"license_ids": [NEW_ID, 999999]})
check(r.json() == {"success": True, "count": 1, "message": "1 licenses deactivated successfully",
                   "unchanged": [{"id": 999999, "reason": "not_found"}]}, f"bulk deactivate: {r.text}")
r = requests.post(f"{BASE}/api/licenses/bulk-deactivate", headers=HEADERS, json={"license_ids": [NEW_ID]})
check(r.json()["count"] == 0 and r.json()["unchanged"] == [{"id": NEW_ID, "reason": "already_inactive"}],
      f"already inactive: {r.text}")
r = requests.post(f"{BASE}/api/licenses/bulk-activate", headers=HEADERS, json={"license_ids": [NEW_ID]})
check(r.json() == {"success": True, "count": 1, "message": "1 licenses activated successfully", "unchanged": []},
      f"bulk activate: {r.text}")
error_shape(requests.post(f"{BASE}/api/licenses/bulk-activate", headers=HEADERS, json={"license_ids": "all"}),
            400, field="license_ids")
error_shape(requests.post(f"{BASE}/api/licenses/bulk-activate", headers=HEADERS,
                          json={"license_ids": list(range(1, 1002))}), 400, field="license_ids")
r = requests.post(f"{BASE}/api/licenses/bulk-delete", headers=HEADERS, json={"license_ids": [NEW_ID]})
check(r.json() == {"success": True, "deleted": 1, "message": "1 licenses deleted successfully", "unchanged": []},
      f"bulk delete: {r.text}")
error_shape(requests.get(f"{BASE}/api/license/info/{NEW_KEY}", headers=HEADERS), 404, code="INVALID_LICENSE")
licenses = requests.get(f"{BASE}/api/customer/{CUSTOMER_ID}/licenses", headers=HEADERS).json()["licenses"]
check([l["license_key"] for l in licenses] == [KEY], f"the deleted license is gone from the customer's: {licenses}")
r = requests.post(f"{BASE}/api/licenses/bulk-delete", headers=HEADERS, json={"license_ids": [NEW_ID]})
check(r.json()["deleted"] == 0 and r.json()["unchanged"] == [{"id": NEW_ID, "reason": "not_found"}], f"gone: {r.text}")

# --- Monitoring and the analytics token -------------------------------------
r = requests.get(f"{BASE}/api/sessions/active-count", headers=HEADERS)
check(r.status_code == 200 and r.json() == {"count": 2}, f"two devices in use: {r.status_code} {r.text}")
r = requests.get(f"{BASE}/api/monitoring/live-stats", headers=HEADERS)
check(r.status_code == 200, f"live stats 200: {r.status_code} {r.text}")
body = r.json()
check(set(body) == {"timestamp", "metrics", "alerts"} and INSTANT.match(body["timestamp"]), f"live stats: {body}")
check(body["metrics"] == {"active_licenses": 2, "total_activations": 2, "active_sessions": 2,
                          "heartbeats_per_minute": 2}, f"live metrics: {body}")
check(body["alerts"] == [], f"no alerts: {body}")
r = requests.get(f"{BASE}/api/monitoring/anomaly-stats", headers=HEADERS)
check(r.json() == {"total_anomalies": 0, "unresolved": 0,
                   "by_type": {"unusual_activation_pattern": 0, "excessive_heartbeats": 0, "license_hopping": 0}},
      f"anomaly stats: {r.text}")
r = requests.get(f"{BASE}/api/admin/license/auth-token", headers=HEADERS)
check(r.status_code == 200 and set(r.json()) == {"token", "expires_at"}, f"auth token: {r.status_code} {r.text}")
TOKEN = r.json()["token"]
check(TOKEN.startswith("eyJ") and TOKEN.count(".") == 2 and INSTANT.match(r.json()["expires_at"]), f"a JWT: {r.text}")
import base64, json as _json
header = _json.loads(base64.urlsafe_b64decode(TOKEN.split(".")[0] + "=="))
check(header["alg"] == "HS256", f"HS256 as the document shows: {header}")
BEARER = {"Authorization": f"Bearer {TOKEN}"}
for path in ("/api/monitoring/live-stats", "/api/monitoring/anomaly-stats", "/api/sessions/active-count",
             f"/api/customer/{CUSTOMER_ID}/quick-stats"):
    r = requests.get(f"{BASE}{path}", headers=BEARER)
    check(r.status_code == 200, f"the token reads {path}: {r.status_code} {r.text}")
r = requests.get(f"{BASE}/api/license/info/{KEY}", headers={"X-API-Key": TOKEN})
check(r.status_code == 401 and r.json() == UNAUTHORIZED, f"the token is no API key: {r.status_code} {r.text}")
r = requests.get(f"{BASE}/api/customer/{CUSTOMER_ID}/licenses", headers=BEARER)
check(r.status_code == 401, f"the token reads statistics only: {r.status_code} {r.text}")
forged = TOKEN[:-4] + ("AAAA" if not TOKEN.endswith("AAAA") else "BBBB")
r = requests.get(f"{BASE}/api/monitoring/live-stats", headers={"Authorization": f"Bearer {forged}"})
check(r.status_code == 401 and r.json() == UNAUTHORIZED, f"a forged token: {r.status_code} {r.text}")

# --- Resources --------------------------------------------------------------
MAIN_ID = requests.get(f"{BASE}/api/license/info/{KEY}", headers=HEADERS).json()["license"]["id"]
made = {}
for kind, identifier in (("server", "SRV-001"), ("server", "SRV-002"), ("workstation", "WS-001")):
    r = requests.post(f"{BASE}/api/v1/resources", headers=ADMIN, json={"type": kind, "identifier": identifier})
    check(r.status_code == 201, f"a resource added: {r.status_code} {r.text}")
    made[identifier] = r.json()["id"]
r = requests.get(f"{BASE}/api/resources/check-availability", headers=HEADERS, params={"type": "server", "count": 2})
body = r.json()
check(r.status_code == 200 and body["available"] is True and body["count"] == 2 and len(body["resources"]) == 2,
      f"two servers free: {r.text}")
check(all(set(x) == {"id", "type", "identifier"} and x["type"] == "server" for x in body["resources"]), f"{body}")
r = requests.post(f"{BASE}/api/resources/allocate", headers=HEADERS,
                  json={"license_id": MAIN_ID, "resource_ids": [made["SRV-001"], made["SRV-002"]]})
check(r.json() == {"success": True, "allocated": 2, "message": "2 resources allocated successfully"},
      f"allocate: {r.status_code} {r.text}")
held = requests.get(f"{BASE}/api/license/{MAIN_ID}/resources", headers=HEADERS).json()["resources"]
check(len(held) == 2 and all(set(x) == {"id", "type", "identifier", "status", "allocated_at"}
                             and x["status"] == "allocated" and INSTANT.match(x["allocated_at"]) for x in held),
      f"the license's resources: {held}")
r = requests.get(f"{BASE}/api/resources/stats", headers=HEADERS)
check(r.json() == {"total": 3, "allocated": 2, "available": 1, "by_type": {
    "server": {"total": 2, "allocated": 2, "available": 0},
    "workstation": {"total": 1, "allocated": 0, "available": 1}}}, f"stats: {r.text}")
r = requests.post(f"{BASE}/api/resources/allocate", headers=HEADERS,
                  json={"license_id": PLAIN_ID, "resource_ids": [made["WS-001"], made["SRV-001"]]})
error = error_shape(r, 409, field="resource_ids")
check(str(made["SRV-001"]) in error["message"], f"the refusal names the held resource: {error}")
r = requests.get(f"{BASE}/api/resources/check-availability", headers=HEADERS, params={"type": "workstation"})
check(r.json()["available"] is True, f"all or nothing: the workstation is still free: {r.text}")
error_shape(requests.post(f"{BASE}/api/resources/allocate", headers=HEADERS,
                          json={"license_id": PLAIN_ID, "resource_ids": [9999]}), 404)
error_shape(requests.post(f"{BASE}/api/resources/allocate", headers=HEADERS,
                          json={"license_id": PLAIN_ID, "resource_ids": []}), 400, field="resource_ids")
r = requests.post(f"{BASE}/api/license/{MAIN_ID}/toggle", headers=HEADERS)
check(r.json()["is_active"] is False, f"suspended: {r.text}")
held = requests.get(f"{BASE}/api/license/{MAIN_ID}/resources", headers=HEADERS).json()["resources"]
check(held == [], f"a suspended license lets its resources go: {held}")
requests.post(f"{BASE}/api/license/{MAIN_ID}/toggle", headers=HEADERS)

# --- Global search ----------------------------------------------------------
r = requests.get(f"{BASE}/api/global-search", headers=HEADERS, params={"q": "acme"})
check(r.status_code == 200 and set(r.json()) == {"results", "total"}, f"search: {r.status_code} {r.text}")
found = r.json()["results"]
check(all(set(x) == {"type", "id", "title", "subtitle", "url"} for x in found), f"result fields: {found}")
check({"type": "customer", "id": CUSTOMER_ID, "title": CUSTOMER, "subtitle": "admin@acme.com",
       "url": f"/customer/edit/{CUSTOMER_ID}"} in found, f"the customer by name: {found}")
check({"type": "license", "id": MAIN_ID, "title": KEY, "subtitle": f"{CUSTOMER} - Active",
       "url": f"/license/edit/{MAIN_ID}"} in found, f"the customer's license: {found}")
r = requests.get(f"{BASE}/api/global-search", headers=HEADERS, params={"q": KEY[5:9].lower(), "type": "license"})
check(any(x["title"] == KEY for x in r.json()["results"]), f"a license by part of its key, any case: {r.text}")
r = requests.get(f"{BASE}/api/global-search", headers=HEADERS, params={"q": "desktop-abc", "type": "device"})
found = r.json()["results"]
check(len(found) == 1 and found[0]["type"] == "device" and found[0]["title"] == "DESKTOP-ABC123"
      and found[0]["id"] == activation["id"], f"a device by its machine name: {found}")
r = requests.get(f"{BASE}/api/global-search", headers=HEADERS, params={"q": "acme", "limit": 1})
check(len(r.json()["results"]) == 1 and r.json()["total"] >= 2, f"limit and total: {r.text}")
error_shape(requests.get(f"{BASE}/api/global-search", headers=HEADERS, params={"q": "a"}), 400, field="q")
error_shape(requests.get(f"{BASE}/api/global-search", headers=HEADERS, params={"q": "ab", "type": "x"}), 400, field="type")

print(f"all {checks} checks passed")
