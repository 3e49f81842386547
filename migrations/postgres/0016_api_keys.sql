-- API keys of the HTTP API (postgres). Keep in step with migrations/sqlite/0016_api_keys.sql.
--
-- A key is `trb_<id>_<secret>`: the id finds the row (no scan), the secret is checked
-- against its SHA-256 digest (the secret is 256 random bits, so a plain digest is enough;
-- the key itself is never stored). An operator key has no tenant; a tenant key acts on
-- its tenant only. `role` is `admin` or `viewer` (read only). A revoked or expired key is
-- refused on the next request.

CREATE TABLE api_keys (
    id          TEXT NOT NULL PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    tenant_id   TEXT REFERENCES tenants (id) ON DELETE CASCADE,
    role        TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ,
    revoked_at  TIMESTAMPTZ
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);
