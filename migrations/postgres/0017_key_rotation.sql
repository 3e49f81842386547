-- Master-key rotation (postgres). Keep in step with migrations/sqlite/0017_key_rotation.sql.
--
-- `tributary keys rotate --new-key-file F` registers the new key here by id, with the
-- path of its key file (never the key), before it re-encrypts anything. The newest row
-- (by started_at) names the key every process seals with from then on; processes read
-- its file from that path (the same path on every host that shares the store) and keep
-- their configured key for reading values not re-encrypted yet. finished_at is set once
-- no sealed value remains under another key id.
CREATE TABLE key_rotations (
    key_id      TEXT NOT NULL PRIMARY KEY,
    key_file    TEXT NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    rewrapped   BIGINT NOT NULL DEFAULT 0
);
