"""Keygen's API through a published Keygen client library, keygen-sdk
(PyPI), unchanged: pointed at keyledger by its API URL, with response
signature checks and its clock-drift check on.

Usage: keygen_sdk_client.py API_URL LICENSE_KEY PUBLIC_KEY_HEX FINGERPRINT
  API_URL: http://127.0.0.1:PORT/keygen/<tenant id>

Prints the license id and the machine id it activated (and deactivated),
one per line as `license=<id>` and `machine=<id>`, for the caller to find
in the native API.
"""
import sys
from datetime import timedelta

import keygen

api_url, license_key, public_key, fingerprint = sys.argv[1:5]

keygen.api_url = api_url
keygen.license_key = license_key
keygen.public_key = public_key
keygen.max_clock_drift = timedelta(minutes=5)


def check(condition, message):
    if not condition:
        raise SystemExit(f"FAILED: {message}")


# A fresh fingerprint: the key is known, the machine is not.
try:
    keygen.validate(fingerprint)
    raise SystemExit("FAILED: a fresh fingerprint validated")
except keygen.LicenseNotActivatedError as err:
    license = err.license
    check(err.result.code in ("NO_MACHINE", "NO_MACHINES", "FINGERPRINT_SCOPE_MISMATCH"), f"code {err.result.code}")
check(license.key == license_key, f"the license carries its key: {license.key}")
print(f"license={license.id}")

machine = license.activate(fingerprint)
check(machine.fingerprint == fingerprint, f"the machine's fingerprint: {machine.fingerprint}")
print(f"machine={machine.id}")

# The same fingerprint again is Keygen's FINGERPRINT_TAKEN, signed too.
try:
    license.activate(fingerprint)
    raise SystemExit("FAILED: a second activation of one fingerprint was accepted")
except keygen.MachineAlreadyActivatedError:
    pass

machine.ping()

license = keygen.validate(fingerprint)
check(license.last_validation.code == "VALID", f"validated: {license.last_validation.code}")

lic_file = license.checkout(include=("entitlements",), ttl=timedelta(days=30))
lic_file.verify()
dataset = lic_file.decrypt(license.key)
check(dataset.license.id == license.id, f"the license file is the license's: {dataset.license.id}")

mach_file = machine.checkout()
mach_file.verify()
machine_data = mach_file.decrypt(license.key + fingerprint)
check(machine_data.machine.id == machine.id, f"the machine file is the machine's: {machine_data.machine.id}")

machine.deactivate()

try:
    keygen.validate(fingerprint)
    raise SystemExit("FAILED: a deactivated fingerprint validated")
except keygen.LicenseNotActivatedError as err:
    check(err.result.code in ("NO_MACHINE", "NO_MACHINES"), f"after deactivation: {err.result.code}")

# An unknown key is NOT_FOUND, as a verified answer.
keygen.license_key = "ZZZZ-ZZZZ-ZZZZ-ZZZZ"
try:
    keygen.validate(fingerprint)
    raise SystemExit("FAILED: an unknown key validated")
except keygen.SignatureVerificationError as err:
    raise SystemExit(f"FAILED: the unknown key's answer is not signed: {err!r}")
except keygen.KeygenError:
    pass

# Another public key: every answer is refused by the client.
keygen.license_key = license_key
keygen.public_key = "11" * 32
try:
    keygen.validate(fingerprint)
    raise SystemExit("FAILED: an answer verified with the wrong public key")
except keygen.SignatureVerificationError:
    pass

print("OK")
