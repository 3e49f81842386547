-- Write-back: how often a write was claimed (postgres). Keep in step with
-- migrations/sqlite/0012_write_claims.sql.
--
-- A create claimed before may have reached the provider even though no attempt was
-- recorded (its worker died, or the answer was lost): the executor looks such a create
-- up before sending it again.
ALTER TABLE writes ADD COLUMN claims BIGINT NOT NULL DEFAULT 0;
