-- Every insert into usage_records (cancel rows included) lands here as measure * sign.
-- The GROUP BY keys are strings and a Date only: grouping by a Decimal column next
-- to a String key crashes ClickHouse 18.16.
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.usage_daily_mv TO {db}.usage_daily AS
SELECT
    toDate(bucket_start, 'UTC') AS day,
    connection_id, provider, record_type, service, model, model_family,
    workspace_id, project_id, api_key_id, api_key_hint, cost_source, unit, currency,
    sum(input_tokens * sign)          AS input_tokens,
    sum(output_tokens * sign)         AS output_tokens,
    sum(cached_input_tokens * sign)   AS cached_input_tokens,
    sum(cache_creation_tokens * sign) AS cache_creation_tokens,
    sum(requests * sign)              AS requests,
    sum(quantity * sign)              AS quantity,
    sum(cost * sign)                  AS cost,
    sum(estimated_cost * sign)        AS estimated_cost,
    sum(credits * sign)               AS credits,
    sum(toInt64(sign))                AS records
FROM {db}.usage_records
GROUP BY day, connection_id, provider, record_type, service, model, model_family,
         workspace_id, project_id, api_key_id, api_key_hint, cost_source, unit, currency
