-- Keep sync_runs for 30 days. TTL arrived in ClickHouse 19.6; on older servers
-- (Debian's 18.16) the daemon drops daily partitions older than 30 days instead.
ALTER TABLE {db}.sync_runs MODIFY TTL started_at + INTERVAL 30 DAY
