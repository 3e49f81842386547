-- What each replica sent under its budget shares (sqlite). Keep in step with
-- migrations/postgres/0027_budget_shares_sent.sql.
--
-- Shares are leased through PostgreSQL only (SQLite has one daemon, and this table stays
-- empty); the columns are here so both schemas stay the same. `sent` holds the counts
-- as comma-separated text where PostgreSQL has an array.
ALTER TABLE budget_shares ADD COLUMN sent_bucket INTEGER NOT NULL DEFAULT 0;
ALTER TABLE budget_shares ADD COLUMN sent TEXT NOT NULL DEFAULT '';
ALTER TABLE budget_shares ADD COLUMN renewed_at TEXT NOT NULL DEFAULT '1970-01-01T00:00:00Z';
