-- usage_records with granules of 1,024 rows instead of 8,192: a sync reads one
-- connection's scope of 50-300 rows, and with 8,192-row granules every such read
-- decompressed thousands of other connections' rows (ClickHouse's work per
-- account and cycle was mostly that). 18.16 cannot change index_granularity in
-- place, so this is a rebuild (src/store/migrations.rs, `Rebuild`): this table is
-- created beside the old one, every row copied and counted, the two swapped by
-- RENAME, and usage_daily_mv dropped before and created again after. Stop every
-- tokentra-sync process that uses the database before upgrading.
CREATE TABLE IF NOT EXISTS {db}.usage_records_rebuild
(
    connection_id         String,
    provider              String,
    record_type           String,
    endpoint              String,
    bucket_start          DateTime('UTC'),
    bucket_end            DateTime('UTC'),
    granularity           String,
    record_key            UInt64,
    model                 String,
    model_raw             String,
    model_family          String,
    service               String,
    workspace_id          String,
    project_id            String,
    api_key_id            String,
    api_key_hint          String,
    user_id               String,
    region                String,
    resource_id           String,
    line_item             String,
    attributes            String,
    input_tokens          Int64,
    output_tokens         Int64,
    cached_input_tokens   Int64,
    cache_creation_tokens Int64,
    requests              Int64,
    requests_reported     Int8,
    quantity              Decimal(38, 9),
    unit                  String,
    cost                  Decimal(38, 9),
    estimated_cost        Decimal(38, 9),
    credits               Decimal(38, 9),
    cost_source           String,
    currency              String,
    amount_original       Decimal(38, 9),
    sign                  Int8,
    version               UInt64,
    synced_at             DateTime('UTC'),
    content_hash          UInt64 DEFAULT 0
)
ENGINE = VersionedCollapsingMergeTree(sign, version)
PARTITION BY toYYYYMM(bucket_start)
ORDER BY (connection_id, record_type, endpoint, bucket_start, record_key)
SETTINGS index_granularity = 1024
