//! The billing export through BigQuery's REST API: one `jobs.query`, polls of
//! `jobs.getQueryResults` until the job is complete, then its pages by
//! `pageToken`, all through the shared [`Pager`] (pages cut through rows, so
//! a record identity seen twice is the error) with every day of the window
//! covered, so a row that vanished from the export is cancelled.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde_json::{json, Value};

use super::parse::{self, JobRef, QueryPage};
use super::{VertexAdapter, BILLING};
use crate::normalize::schema::Granularity;
use crate::providers::platform::paging::{bucket_starts, Page, PageBucket, PageError, Pager, Spread};
use crate::providers::{EndpointFetch, FailureKind, ProviderError, TimeWindow};

/// Most result pages one fetch follows (10,000 rows each by default).
const MAX_PAGES: usize = 10_000;

/// Polls of a running job before the fetch gives up (the next sync asks again).
const MAX_POLLS: u32 = 60;

/// How long each getQueryResults call may wait server-side for the job.
const SERVER_WAIT_MS: u32 = 10_000;

/// Days after a month's end during which its invoice can still change.
const INVOICE_CLOSE_DAYS: i64 = 5;

/// The billing query. Money is summed as NUMERIC (exact, 9 places) so the
/// cells are decimal strings, not float sums. Credits are summed per export
/// row in a scalar subquery: `UNNEST(credits)` in FROM would drop every row
/// without credits. Only `{table}` is spliced in, and only as a checked,
/// backtick-quoted identifier; dates and services are query parameters.
const QUERY: &str = "SELECT
  TIMESTAMP_TRUNC(usage_start_time, DAY, 'UTC') AS day,
  service.description AS service,
  sku.id AS sku_id,
  sku.description AS sku,
  project.id AS project_id,
  location.region AS region,
  cost_type,
  currency,
  CAST(currency_conversion_rate AS NUMERIC) AS conversion_rate,
  SUM(CAST(cost AS NUMERIC)) AS cost,
  SUM(IFNULL((SELECT SUM(CAST(c.amount AS NUMERIC)) FROM UNNEST(credits) AS c), 0)) AS credits
FROM {table}
WHERE usage_start_time >= @start AND usage_start_time < @end
  AND service.description IN UNNEST(@services)
GROUP BY day, service, sku_id, sku, project_id, region, cost_type, currency, conversion_rate
ORDER BY day, service, sku_id, project_id, region, cost_type, currency, conversion_rate";

/// The days to read: the asked days, widened back to the start of the
/// invoice month still open `INVOICE_CLOSE_DAYS` ago (restatements within
/// it), and never past today.
pub fn billing_window(window: TimeWindow, now: DateTime<Utc>) -> TimeWindow {
    let window = window.snapped_out(Granularity::Day);
    let end = window.end.min(Granularity::Day.ceil(now));
    let open = (now - Duration::days(INVOICE_CLOSE_DAYS)).date_naive();
    let month_start = NaiveDate::from_ymd_opt(open.year(), open.month(), 1)
        .unwrap_or(open)
        .and_time(Default::default())
        .and_utc();
    let start = if end > month_start {
        window.start.min(month_start)
    } else {
        window.start
    };
    TimeWindow::new(start, end)
}

/// A TIMESTAMP query parameter value.
fn timestamp_param(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string()
}

pub fn request_body(adapter: &VertexAdapter, window: TimeWindow) -> Value {
    let config = &adapter.config;
    let services: Vec<Value> = config.services.iter().map(|s| json!({ "value": s })).collect();
    json!({
        "query": QUERY.replace("{table}", &config.billing_table.quoted()),
        "useLegacySql": false,
        "parameterMode": "NAMED",
        "queryParameters": [
            {"name": "start", "parameterType": {"type": "TIMESTAMP"}, "parameterValue": {"value": timestamp_param(window.start)}},
            {"name": "end", "parameterType": {"type": "TIMESTAMP"}, "parameterValue": {"value": timestamp_param(window.end)}},
            {"name": "services", "parameterType": {"type": "ARRAY", "arrayType": {"type": "STRING"}},
             "parameterValue": {"arrayValues": services}},
        ],
        "maxResults": config.page_size,
        "timeoutMs": SERVER_WAIT_MS,
        "location": config.location,
        "formatOptions": {"useInt64Timestamp": true},
    })
}

pub async fn fetch(adapter: &VertexAdapter, window: TimeWindow) -> Result<EndpointFetch, ProviderError> {
    let window = billing_window(window, Utc::now());
    if window.is_empty() {
        return Ok(EndpointFetch::default());
    }
    let pager = Pager {
        http: &adapter.http,
        spec: &BILLING,
        window,
        spread: Spread::RowsAcrossPages { max_pages: MAX_PAGES },
        measures: super::DESCRIPTOR.measures,
    };
    let job: std::sync::Mutex<Option<JobRef>> = std::sync::Mutex::new(None);
    pager
        .collect(|cursor, number| {
            let job = &job;
            async move {
                let known = job.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let page = match (number, known) {
                    (1, _) => {
                        let first = query(adapter, window).await?;
                        *job.lock().unwrap_or_else(|p| p.into_inner()) = Some(first.job.clone());
                        until_complete(adapter, first).await?
                    }
                    (_, Some(known)) => {
                        let next = results(adapter, &known, cursor.as_deref()).await?;
                        until_complete(adapter, next).await?
                    }
                    (_, None) => return Err(PageError::Parse("a next page without a query job (adapter bug)".into())),
                };
                let mut buckets: Vec<PageBucket> = Vec::new();
                if number == 1 {
                    // Every day of the window is answered, even with no rows.
                    buckets.extend(bucket_starts(window, &BILLING).into_iter().map(|start| PageBucket {
                        start,
                        end: None,
                        records: Vec::new(),
                    }));
                }
                for record in page.records {
                    let start = record.identity.bucket_start;
                    match buckets.iter_mut().find(|b| b.start == start) {
                        Some(bucket) => bucket.records.push(record),
                        None => buckets.push(PageBucket {
                            start,
                            end: None,
                            records: vec![record],
                        }),
                    }
                }
                Ok(Page {
                    buckets,
                    next: page.page_token,
                })
            }
        })
        .await
}

async fn query(adapter: &VertexAdapter, window: TimeWindow) -> Result<QueryPage, PageError> {
    let url = format!(
        "{}/projects/{}/queries",
        adapter.bigquery_url, adapter.config.query_project
    );
    let body = request_body(adapter, window);
    let answer = adapter
        .http
        .get_json(BILLING.endpoint, |client| client.post(&url).json(&body))
        .await?;
    Ok(parse::query_page(answer.json(), BILLING.endpoint)?)
}

async fn results(adapter: &VertexAdapter, job: &JobRef, page_token: Option<&str>) -> Result<QueryPage, PageError> {
    let url = format!(
        "{}/projects/{}/queries/{}",
        adapter.bigquery_url, job.project_id, job.job_id
    );
    let mut params: Vec<(&str, String)> = vec![
        ("maxResults", adapter.config.page_size.to_string()),
        ("timeoutMs", SERVER_WAIT_MS.to_string()),
        ("formatOptions.useInt64Timestamp", "true".to_string()),
        (
            "location",
            job.location.clone().unwrap_or_else(|| adapter.config.location.clone()),
        ),
    ];
    if let Some(token) = page_token {
        params.push(("pageToken", token.to_string()));
    }
    let answer = adapter
        .http
        .get_json(BILLING.endpoint, |client| client.get(&url).query(&params))
        .await?;
    let page = parse::query_page(answer.json(), BILLING.endpoint)?;
    if page.job.job_id != job.job_id {
        return Err(PageError::Parse(format!(
            "getQueryResults of job {} answered for job {}",
            job.job_id, page.job.job_id
        )));
    }
    Ok(page)
}

/// Polls the job of `page` until it is complete; the complete answer holds
/// the page that was asked for.
async fn until_complete(adapter: &VertexAdapter, mut page: QueryPage) -> Result<QueryPage, PageError> {
    let mut polls = 0;
    while !page.complete {
        polls += 1;
        if polls > MAX_POLLS {
            return Err(PageError::Provider(ProviderError::RetriesExhausted {
                account: adapter.account.clone(),
                endpoint: BILLING.endpoint.to_string(),
                attempts: MAX_POLLS,
                kind: FailureKind::Timeout,
                last_error: format!(
                    "query job {} is still running after {MAX_POLLS} polls; the next sync asks again",
                    page.job.job_id
                ),
            }));
        }
        tokio::time::sleep(adapter.poll_delay).await;
        let job = page.job.clone();
        page = results(adapter, &job, None).await?;
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
    }

    #[test]
    fn vertex_billing_window_reaches_back_to_the_open_invoice_month_and_not_past_today() {
        let now = at(2025, 3, 20) + Duration::hours(7);
        let w = billing_window(TimeWindow::new(at(2025, 3, 17), now), now);
        assert_eq!((w.start, w.end), (at(2025, 3, 1), at(2025, 3, 21)));
        // Early in a month the previous invoice is still open.
        let now = at(2025, 3, 3) + Duration::hours(1);
        let w = billing_window(TimeWindow::new(at(2025, 2, 28), now), now);
        assert_eq!(w.start, at(2025, 2, 1));
        // A backfill chunk of older months is read as asked.
        let w = billing_window(TimeWindow::new(at(2024, 11, 1), at(2024, 12, 1)), now);
        assert_eq!((w.start, w.end), (at(2024, 11, 1), at(2024, 12, 1)));
    }

    #[test]
    fn vertex_query_splices_only_the_quoted_table() {
        assert!(QUERY.matches('{').count() == 1 && QUERY.contains("{table}"));
        assert_eq!(timestamp_param(at(2025, 1, 15)), "2025-01-15 00:00:00.000000+00:00");
    }
}
