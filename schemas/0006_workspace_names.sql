-- Display names of provider workspaces/projects, one row per observation so
-- renames keep their history; the current name is argMax(name, observed_at).
CREATE TABLE IF NOT EXISTS {db}.workspace_names
(
    connection_id String,
    provider      String,
    workspace_id  String,
    name          String,
    observed_at   DateTime('UTC')
)
ENGINE = MergeTree()
ORDER BY (connection_id, workspace_id, observed_at)
