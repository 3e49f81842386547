-- Token lifecycle (PostgreSQL). Keep in step with migrations/sqlite/0004_token_lifecycle.sql.
--
-- The access token a connection's runs share is stored sealed in `auth_state` (from
-- 0001), tagged with the credentials version it was obtained with and a serial that
-- grows with every token stored, so a run that saw serial S can tell whether someone
-- else has refreshed since. A refresh is done by one runner at a time across replicas:
-- it holds the refresh lease (`refresh_lock_owner` until `refresh_lock_until`), and its
-- write is a compare-and-swap on `credentials_version`. `refused_version` remembers the
-- credentials version whose grant the provider refused (`invalid_grant`), so no runner
-- spends it again; new credentials bump the version and clear that by themselves.

ALTER TABLE connections ADD COLUMN auth_state_key_id TEXT;
ALTER TABLE connections ADD COLUMN auth_state_version BIGINT;
ALTER TABLE connections ADD COLUMN auth_state_serial BIGINT NOT NULL DEFAULT 0;
ALTER TABLE connections ADD COLUMN auth_state_expires_at TIMESTAMPTZ;
ALTER TABLE connections ADD COLUMN refresh_lock_owner TEXT;
ALTER TABLE connections ADD COLUMN refresh_lock_until TIMESTAMPTZ;
ALTER TABLE connections ADD COLUMN refused_version BIGINT;

-- Tokens stored before this migration were never written (the column was unused).
UPDATE connections SET auth_state = NULL, auth_state_updated_at = NULL;
