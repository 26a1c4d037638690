-- One row per sync attempt. Kept 30 days: a TTL on servers that have it (gated
-- migration), daily partitions dropped by the daemon on ClickHouse 18.16.
CREATE TABLE IF NOT EXISTS {db}.sync_runs
(
    run_id          String,
    connection_id   String,
    provider        String,
    trigger         String,
    window_start    DateTime('UTC'),
    window_end      DateTime('UTC'),
    status          String,
    rows_fetched    UInt64,
    rows_written    UInt64,
    rows_cancelled  UInt64,
    http_requests   UInt64,
    retries         UInt64,
    duration_ms     UInt64,
    error           String,
    started_at      DateTime('UTC'),
    finished_at     DateTime('UTC')
)
ENGINE = MergeTree()
PARTITION BY toYYYYMMDD(started_at)
ORDER BY (connection_id, started_at)
