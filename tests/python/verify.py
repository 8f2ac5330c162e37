"""How a vendor's software checks keyledger's answers: the code the README
shows, used as it is by the tests."""

import base64
import json
import re

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def verify_answer(response, jwks, sent):
    """The answer's JSON if keyledger signed exactly these bytes as the
    answer to `sent` (the request body: its nonce, licenseKey and
    machineId; None for an answer given before the body was read); raises
    otherwise (cryptography's InvalidSignature, or ValueError).

    The license key and machine id matter as much as the nonce: a proxy
    between the software and keyledger could keep the nonce but ask about
    another machine, one that holds a seat, and hand back that machine's
    signed VALID."""
    fields = dict(re.findall(r'(\w+)="([^"]*)"', response.headers["Keyledger-Signature"]))
    jwk = next(k for k in jwks["keys"] if k["kid"] == fields["keyid"])
    public_key = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(jwk["x"] + "=="))
    public_key.verify(base64.b64decode(fields["signature"]), response.content)
    answer = json.loads(response.content)
    sent = sent or {}
    for field in ("nonce", "licenseKey", "machineId"):
        if answer.get(field) != sent.get(field):
            raise ValueError(f"not the answer to this request: its {field} is not the one sent")
    return answer
