-- Which migrations this database has. Every migration is idempotent on its
-- own (IF NOT EXISTS), so a crash between applying and recording is harmless.
CREATE TABLE IF NOT EXISTS {db}.schema_migrations
(
    version    UInt32,
    name       String,
    checksum   String,
    applied_at DateTime('UTC')
)
ENGINE = MergeTree()
ORDER BY version
