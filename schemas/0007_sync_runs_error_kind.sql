-- The typed reason of a failed sync (auth, throttled, provider_5xx, timeout,
-- network, malformed, request, config, store), so dashboards and alerts can
-- tell a revoked key from a provider outage. Empty on success.
-- 18.16 has no ADD COLUMN IF NOT EXISTS: the migration runner treats "column
-- already exists" (code 44) from an ADD COLUMN as already applied.
ALTER TABLE {db}.sync_runs ADD COLUMN error_kind String DEFAULT '' AFTER status
