-- One normalized fact per provider record, written only as deltas (DESIGN.md rule 1).
-- A changed record is a cancel row (verbatim copy of the stored row, sign -1) plus
-- the new row (sign +1, a new version); VersionedCollapsingMergeTree folds the pairs
-- away on merge, and every reader nets rows with `sign` instead of trusting merges.
-- Money is Decimal(38, 9) USD; never GROUP BY a money column (18.16 segfaults).
CREATE TABLE IF NOT EXISTS {db}.usage_records
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
    synced_at             DateTime('UTC')
)
ENGINE = VersionedCollapsingMergeTree(sign, version)
PARTITION BY toYYYYMM(bucket_start)
ORDER BY (connection_id, record_type, endpoint, bucket_start, record_key)
