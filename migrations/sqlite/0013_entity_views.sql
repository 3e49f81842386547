-- The entity views (`entity_<name>`, made from entities.toml when the daemon starts and
-- reloads) are read per tenant by what changed since a time: `synced_at` is
-- `last_synced`. The primary key serves lookups by external id.
CREATE INDEX records_synced ON records (tenant_id, entity, last_synced);
