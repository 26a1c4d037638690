-- The provider's own names of API keys, one row per observation that changed
-- something (name, masked hint or workspace), so renames keep their history;
-- the current name is argMax(name, observed_at). key_hint is the provider's
-- masked form only (sk-ant-api03-R2D...igAA), never a whole key.
CREATE TABLE IF NOT EXISTS {db}.api_key_names
(
    connection_id String,
    provider      String,
    api_key_id    String,
    name          String,
    key_hint      String,
    workspace_id  String,
    observed_at   DateTime('UTC')
)
ENGINE = MergeTree()
ORDER BY (connection_id, api_key_id, observed_at)
