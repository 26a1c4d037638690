-- The watermark per account: everything before `watermark` has been synced and
-- stored. Latest row per connection wins (read with argMax(..., updated_at)).
CREATE TABLE IF NOT EXISTS {db}.sync_state
(
    connection_id    String,
    provider         String,
    watermark        DateTime('UTC'),
    last_success_at  DateTime('UTC'),
    last_deep_sync_at DateTime('UTC'),
    updated_at       UInt64
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY connection_id
