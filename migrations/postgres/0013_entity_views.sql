-- The entity views (`entity_<name>`, made from entities.toml when the daemon starts and
-- reloads) are read per tenant by what changed since a time: `synced_at` is
-- `last_synced`. The primary key serves lookups by external id.
--
-- `last_synced` leads: an index that starts with (tenant_id, entity) would compete with
-- the primary key for the page write's per-record lookup (tenant, entity, provider,
-- external id). On statistics from before a large first sync both look like one row,
-- the narrower index wins, and every lookup then scans the tenant's whole entity.
CREATE INDEX records_synced ON records (last_synced, tenant_id, entity);
