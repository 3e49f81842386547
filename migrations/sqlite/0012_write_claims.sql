-- Write-back: how often a write was claimed (sqlite). Keep in step with
-- migrations/postgres/0012_write_claims.sql.
--
-- A create claimed before may have reached the provider even though no attempt was
-- recorded (its worker died, or the answer was lost): the executor looks such a create
-- up before sending it again.
ALTER TABLE writes ADD COLUMN claims INTEGER NOT NULL DEFAULT 0;
