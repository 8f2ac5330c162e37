"""Checks one offline license token the way a vendor's software does, with
PyJWT and the tenant's JWKS. Usage: verify_token.py JWKS_URL ISSUER TOKEN.
Prints the claims and exits 0 if it verifies; prints why and exits 1 if not."""

import json
import sys

import jwt

jwks_url, issuer, token = sys.argv[1:4]
try:
    key = jwt.PyJWKClient(jwks_url, cache_keys=False).get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key, algorithms=["EdDSA"], issuer=issuer)
except jwt.PyJWTError as error:
    print(f"{type(error).__name__}: {error}")
    sys.exit(1)
print(json.dumps(claims))
