"""A vendor's client, written from the README: it calls every client
endpoint with a fresh nonce, checks each signed answer with `verify.py`,
and checks its offline license token with PyJWT against the tenant's JWKS.

Environment: BASE, TENANT (id), LICENSE_KEY (a license with a free seat),
CLIENT_KEY (optional: sent as a Bearer key). Exits non-zero on the first
failed check, saying which."""

import hashlib
import json
import os
import secrets
import sys

import jwt
import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from verify import verify_answer

BASE, TENANT, KEY = os.environ["BASE"], os.environ["TENANT"], os.environ["LICENSE_KEY"]
HEADERS = {"Authorization": f"Bearer {os.environ['CLIENT_KEY']}"} if os.environ.get("CLIENT_KEY") else {}
JWKS_URL = f"{BASE}/api/v1/tenants/{TENANT}/jwks.json"
MACHINE = "python-client-" + secrets.token_hex(4)
checks = 0


def check(condition, what):
    global checks
    if not condition:
        sys.exit(f"FAILED: {what}")
    checks += 1


def call(endpoint, **body):
    nonce = secrets.token_urlsafe(16)
    payload = {"licenseKey": KEY, "machineId": MACHINE, "nonce": nonce, **body}
    response = requests.post(f"{BASE}/api/v1/licenses/{endpoint}", json=payload, headers=HEADERS, timeout=10)
    return response, payload


jwks = requests.get(JWKS_URL, timeout=10).json()
check(all(k["kty"] == "OKP" and k["crv"] == "Ed25519" and k["alg"] == "EdDSA" for k in jwks["keys"]), "JWKS shape")

# Every endpoint's answer verifies, names its request, and echoes the nonce.
for endpoint in ["activate", "validate", "heartbeat", "token"]:
    response, sent = call(endpoint)
    check(response.status_code == 200, f"{endpoint} answered {response.status_code}: {response.text}")
    answer = verify_answer(response, jwks, sent)
    check(answer["licenseKey"] == KEY and answer["machineId"] == MACHINE, f"{endpoint} names its request")
    check(answer["issuedAt"].endswith("Z"), f"{endpoint} says when it was issued")

    # A byte changed anywhere breaks the signature.
    tampered = requests.models.Response()
    tampered.headers = response.headers
    tampered._content = response.content.replace(b'"nonce"', b'"nonce" ', 1)
    try:
        verify_answer(tampered, jwks, sent)
        check(False, f"a tampered {endpoint} answer verified")
    except InvalidSignature:
        check(True, "tampered")

    # A recorded answer does not pass for another request's.
    try:
        verify_answer(response, jwks, {**sent, "nonce": "another-nonce"})
        check(False, f"a replayed {endpoint} answer verified")
    except ValueError:
        check(True, "replayed")

    # Signed by a key the vendor never bundled: refused.
    stranger = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    import base64

    foreign = {"keys": [dict(k, x=base64.urlsafe_b64encode(stranger).decode().rstrip("=")) for k in jwks["keys"]]}
    try:
        verify_answer(response, foreign, sent)
        check(False, f"{endpoint} verified with the wrong key")
    except InvalidSignature:
        check(True, "wrong key")

    if endpoint in ("activate", "token"):
        token = answer["licenseToken"]
        signing_key = jwt.PyJWKClient(JWKS_URL).get_signing_key_from_jwt(token)
        claims = jwt.decode(token, signing_key, algorithms=["EdDSA"], issuer=f"keyledger:{TENANT}")
        check(claims["machine"] == hashlib.sha256(MACHINE.encode()).hexdigest(), "the token names this machine")
        check(claims["licenseKey"] == KEY, "the token names the license key")
        check(claims["exp"] > claims["iat"] == claims["nbf"], "the token's lifetime")
        check(claims["status"] == 1 and isinstance(claims["sequence"], int) and len(claims["hash"]) == 64,
              "the token ties to a point of the license's history")

# Refusals are signed too: another machine's token, an unknown key.
response, sent = call("token", machineId="never-activated")
check(response.status_code == 400, f"a token for a machine without a seat: {response.status_code}")
refusal = verify_answer(response, jwks, sent)
check(refusal["success"] is False and refusal["machineId"] == "never-activated", "the refusal names its request")
response, sent = call("validate", licenseKey="ABCD-EFGH-JKMN-PQRS")
answer = verify_answer(response, jwks, sent)
check(answer["isValid"] is False, "an unknown key is not valid")

# A body that isn't JSON is refused before any nonce can be read: still
# validate's shape, and signed (by the platform key, in every JWKS).
for endpoint in ["validate", "heartbeat"]:
    response = requests.post(f"{BASE}/api/v1/licenses/{endpoint}", data=b'{"licenseKey": ', timeout=10,
                             headers={**HEADERS, "Content-Type": "application/json"})
    check(response.status_code == 400, f"{endpoint} of a broken body: {response.status_code}")
    answer = verify_answer(response, jwks, None)
    check(answer["isValid"] is False and answer["code"] == "INVALID_REQUEST" and answer["reason"] == "malformed_json",
          f"{endpoint} of a broken body in validate's shape: {answer}")

# A proxy between software and keyledger keeps the software's nonce but
# asks about a machine that holds a seat: the signed VALID it gets back is
# genuine and carries the right nonce, and is still refused, because it
# answers for another machine.
stranger = {"licenseKey": KEY, "machineId": "no-seat-" + secrets.token_hex(4), "nonce": secrets.token_urlsafe(16)}
rewritten = {**stranger, "machineId": MACHINE}
response = requests.post(f"{BASE}/api/v1/licenses/validate", json=rewritten, headers=HEADERS, timeout=10)
check(json.loads(response.content)["isValid"] is True, "the proxy's rewritten request is answered VALID")
check(json.loads(response.content)["nonce"] == stranger["nonce"], "and carries the software's own nonce")
try:
    verify_answer(response, jwks, stranger)
    check(False, "an answer for another machine verified")
except ValueError:
    check(True, "another machine's answer")

response, sent = call("deactivate")
check(verify_answer(response, jwks, sent)["success"] is True, "deactivate")
print(json.dumps({"checks": checks}))
