-- The typed reason of a failed sync (auth, throttled, provider_5xx, timeout,
-- network, malformed, request, config, store), so dashboards and alerts can
-- tell a revoked key from a provider outage (empty on success), and the
-- account's connection status after the attempt (connected, error,
-- disconnected).
-- 18.16 has no ADD COLUMN IF NOT EXISTS: the migration runner treats "column
-- already exists" (code 44) from an ADD COLUMN as already applied; one ALTER
-- adds both columns or neither.
ALTER TABLE {db}.sync_runs
    ADD COLUMN error_kind String DEFAULT '' AFTER status,
    ADD COLUMN connection_status String DEFAULT '' AFTER error_kind
