-- Daily rollup for dashboards. Filled only by usage_daily_mv; read it with
-- sum(...) GROUP BY, never bare, because SummingMergeTree merges lazily.
-- `records` is sum(sign) so a live record whose measures are all zero (an idle
-- key) keeps its row through merges, and a fully cancelled one disappears.
CREATE TABLE IF NOT EXISTS {db}.usage_daily
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
PARTITION BY toYYYYMM(day)
ORDER BY (connection_id, day, provider, record_type, service, model, model_family,
          workspace_id, project_id, api_key_id, api_key_hint, cost_source, unit, currency)
