"""Seed 000's Python sample code, as published, run against keyledger.

Only the values a reader of the seed must fill in anyway are changed: BASE
and the API key in place of YOUR_JWT come from the environment, and the
license key and id (which the daemon and the revoke call would have in their
configuration) come from the generate response. The activation failure
branch exits non-zero, and a last step checks that the revoked key activates
on a new host.
"""
import os

import requests

BASE = os.environ["KEYLEDGER_BASE"]
YOUR_JWT = os.environ["KEYLEDGER_USER_KEY"]

# --- Generate a license and list your licenses ------------------------------
HEADERS = {"Authorization": f"Bearer {YOUR_JWT}"}

license_ = requests.post(
    f"{BASE}/api/v1/fastrLicense/generate",
    headers=HEADERS,
    json={"licenseType": 1, "validityDays": 365, "maxConnections": 10},
).json()
print("New license key:", license_["licenseKey"])

my_licenses = requests.get(
    f"{BASE}/api/v1/fastrLicense/my-licenses",
    headers=HEADERS,
).json()
for lic in my_licenses:
    print(lic["licenseKey"], "status:", lic["status"], "activated:", lic["isActivated"])

# --- Activate and validate a license (from the Fastr server daemon) ---------
LICENSE_KEY = license_["licenseKey"]  # the daemon reads it from its configuration

# First-run activation
activation = requests.post(
    f"{BASE}/api/v1/fastrLicense/activate",
    json={
        "licenseKey": LICENSE_KEY,
        "machineId": "machine-fingerprint-123",
        "machineName": "prod-fastr-01",
    },
).json()

if activation["success"]:
    print("Activated until:", activation["expiresAt"])
else:
    print("Activation failed:", activation["error"])
    raise SystemExit(1)

# Periodic heartbeat
validation = requests.post(
    f"{BASE}/api/v1/fastrLicense/validate",
    json={
        "licenseKey": LICENSE_KEY,
        "machineId": "machine-fingerprint-123",
    },
).json()

if not validation["isValid"]:
    raise SystemExit(f"License no longer valid: {validation['error']}")

# --- Revoke a license to move it to a new machine ---------------------------
license_id = license_["id"]
resp = requests.post(
    f"{BASE}/api/v1/fastrLicense/revoke/{license_id}",
    headers=HEADERS,
).json()
print(resp["message"])
# The same license key can now be re-activated on a different machine.
moved = requests.post(
    f"{BASE}/api/v1/fastrLicense/activate",
    json={"licenseKey": LICENSE_KEY, "machineId": "new-host", "machineName": "prod-fastr-02"},
).json()
assert moved["success"], moved
print("seed 000 sample: OK")
