-- A retired signing key stays published (in the JWKS, and for verifying
-- tokens) until `published_until`: it stops signing everywhere at once,
-- and what any process signed with it before it heard of the retirement
-- still verifies. NULL for keys retired before this column, which were
-- dropped at once, and for keys not retired.
ALTER TABLE signing_keys ADD COLUMN published_until TEXT;
