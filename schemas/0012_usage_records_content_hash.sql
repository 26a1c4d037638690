-- A digest of each row's content (every column but sign, version, synced_at
-- and itself), written by the daemon, so a sync compares a provider's answer
-- with what is stored by reading five narrow columns (bucket, key, version,
-- sign, digest) instead of every column of its scope, and reads whole rows
-- only for records that changed (their cancel rows must copy them verbatim).
-- 0 marks rows written before this column existed: those are read whole.
ALTER TABLE {db}.usage_records
    ADD COLUMN content_hash UInt64 DEFAULT 0 AFTER synced_at
