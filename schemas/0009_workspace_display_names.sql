-- Display names people give workspaces/projects (`workspaces rename | revert`),
-- one row per change so the history stays: who, when, old and new. The current
-- display name is argMax(display_name, seq); '' means "no override" and the
-- provider's own name (workspace_names) shows. Workspaces of any provider with
-- the same display name are one row in the dashboards.
CREATE TABLE IF NOT EXISTS {db}.workspace_display_names
(
    connection_id String,
    provider      String,
    workspace_id  String,
    display_name  String,
    previous_name String,
    action        String,
    changed_by    String,
    changed_at    DateTime('UTC'),
    seq           UInt64
)
ENGINE = MergeTree()
ORDER BY (connection_id, workspace_id, seq)
