-- usage_daily partitioned by day instead of by month. Every sync inserts a few
-- rows for today into the rollup, and 18.16 merges those small parts into the
-- partition's big one: with a month per partition each such merge rewrote up
-- to a month of every connection's rollup (at 10,000 accounts, 133-139 merges
-- and ~60 s of merging per 5-minute cycle in two of three measured runs).
-- With a day per partition a merge rewrites at most that day. Changing the
-- partition key is a rebuild (src/store/migrations.rs, `Rebuild`), like 13:
-- this table is created beside the old one, every row copied and its sums
-- compared, the two swapped by RENAME, usage_daily_mv dropped before and
-- created again after. Stop every tokentra-sync process that uses the
-- database before upgrading.
CREATE TABLE IF NOT EXISTS {db}.usage_daily_rebuild
(
    day                   Date,
    connection_id         String,
    provider              String,
    record_type           String,
    service               String,
    model                 String,
    model_family          String,
    workspace_id          String,
    project_id            String,
    api_key_id            String,
    api_key_hint          String,
    cost_source           String,
    unit                  String,
    currency              String,
    input_tokens          Int64,
    output_tokens         Int64,
    cached_input_tokens   Int64,
    cache_creation_tokens Int64,
    requests              Int64,
    quantity              Decimal(38, 9),
    cost                  Decimal(38, 9),
    estimated_cost        Decimal(38, 9),
    credits               Decimal(38, 9),
    records               Int64
)
ENGINE = SummingMergeTree()
PARTITION BY day
ORDER BY (connection_id, day, provider, record_type, service, model, model_family,
          workspace_id, project_id, api_key_id, api_key_hint, cost_source, unit, currency)
