-- Seed 001's dialect signs its answers with RSA-SHA256: one 2048-bit key
-- per tenant, made on the tenant's first seed-001 call, its private key
-- sealed by the master key like the Ed25519 keys (PKCS#8 DER, sealed with
-- the row's kid as context).
CREATE TABLE rsa_signing_keys
(
    tenant_id   text PRIMARY KEY REFERENCES tenants (id),
    kid         text NOT NULL,
    public_pem  text NOT NULL,
    private_key text NOT NULL,
    created_at  text NOT NULL
);
