-- The change feed: every insert, update and soft delete of a record takes the next
-- number of its tenant's change sequence, in the transaction of the write. A record
-- keeps its latest change: `change_seq` (NULL only inside the transaction that is
-- writing it), `change_kind` (inserted | updated | deleted) and `change_run` (the run
-- that made it; NULL for records written before the feed existed).
ALTER TABLE records ADD COLUMN change_seq BIGINT;
ALTER TABLE records ADD COLUMN change_kind TEXT NOT NULL DEFAULT 'inserted';
ALTER TABLE records ADD COLUMN change_run UUID;

-- The last number handed out per tenant; a row appears with the tenant's first change.
CREATE TABLE change_sequences (
    tenant_id TEXT   NOT NULL PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    last_seq  BIGINT NOT NULL
);

-- Existing records enter the feed in the order they were last written, so it starts
-- complete: soft-deleted ones as `deleted`, the others as `inserted`.
UPDATE records r SET change_seq = n.seq,
    change_kind = CASE WHEN r.deleted_at IS NULL THEN 'inserted' ELSE 'deleted' END
FROM (SELECT tenant_id, entity, provider, external_id,
          row_number() OVER (PARTITION BY tenant_id ORDER BY last_synced, entity, provider, external_id) AS seq
      FROM records) n
WHERE r.tenant_id = n.tenant_id AND r.entity = n.entity AND r.provider = n.provider
  AND r.external_id = n.external_id;

INSERT INTO change_sequences (tenant_id, last_seq)
SELECT tenant_id, max(change_seq) FROM records GROUP BY tenant_id;

-- The feed is read in sequence order per tenant; a run's changes are found by run.
CREATE INDEX records_changes ON records (tenant_id, change_seq);
CREATE INDEX records_change_run ON records (change_run, entity);
