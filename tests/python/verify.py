"""How a vendor's software checks keyledger's answers: the code the README
shows, used as it is by the tests."""

import base64
import json
import re

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def verify_answer(response, jwks, nonce):
    """The answer's JSON if keyledger signed exactly these bytes for this
    nonce; raises otherwise (cryptography's InvalidSignature, or ValueError)."""
    fields = dict(re.findall(r'(\w+)="([^"]*)"', response.headers["Keyledger-Signature"]))
    jwk = next(k for k in jwks["keys"] if k["kid"] == fields["keyid"])
    public_key = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(jwk["x"] + "=="))
    public_key.verify(base64.b64decode(fields["signature"]), response.content)
    answer = json.loads(response.content)
    if answer["nonce"] != nonce:
        raise ValueError("a replayed answer: the nonce is not the one sent")
    return answer
