//! Token counts from Cloud Monitoring: `projects.timeSeries.list` of the
//! publisher models' DELTA token-count metric, aligned to hours
//! (`ALIGN_SUM` over 3600 s, anchored on the window's end, which is a whole
//! hour) and summed per model and token type. Pages cut through series, so
//! the Pager refuses a (hour, model, type) seen twice; every hour of the
//! window is covered (an hour without points had no traffic).

use chrono::{SecondsFormat, Utc};

use super::parse::{self, TOKEN_METRIC};
use super::{VertexAdapter, TOKENS};
use crate::normalize::schema::Granularity;
use crate::providers::platform::paging::{bucket_starts, Page, PageBucket, Pager, Spread};
use crate::providers::{EndpointFetch, ProviderError, TimeWindow};

/// Series per page asked for (Monitoring's maximum is 100,000 points).
const PAGE_SIZE: &str = "1000";

/// Most pages one fetch follows.
const MAX_PAGES: usize = 1_000;

pub async fn fetch(adapter: &VertexAdapter, window: TimeWindow) -> Result<EndpointFetch, ProviderError> {
    let Some(root) = adapter.config.monitoring_url.as_deref() else {
        return Ok(EndpointFetch::default());
    };
    let window = window.snapped_out(Granularity::Hour);
    let window = TimeWindow::new(window.start, window.end.min(Granularity::Hour.ceil(Utc::now())));
    if window.is_empty() {
        return Ok(EndpointFetch::default());
    }
    let url = format!("{root}/v3/projects/{}/timeSeries", adapter.config.monitoring_project);
    let query: Vec<(&str, String)> = vec![
        ("filter", format!("metric.type=\"{TOKEN_METRIC}\"")),
        (
            "interval.startTime",
            window.start.to_rfc3339_opts(SecondsFormat::Secs, true),
        ),
        (
            "interval.endTime",
            window.end.to_rfc3339_opts(SecondsFormat::Secs, true),
        ),
        ("aggregation.alignmentPeriod", "3600s".into()),
        ("aggregation.perSeriesAligner", "ALIGN_SUM".into()),
        ("aggregation.crossSeriesReducer", "REDUCE_SUM".into()),
        ("aggregation.groupByFields", "resource.label.model_user_id".into()),
        ("aggregation.groupByFields", "metric.label.type".into()),
        ("pageSize", PAGE_SIZE.into()),
    ];
    let pager = Pager {
        http: &adapter.http,
        spec: &TOKENS,
        window,
        spread: Spread::RowsAcrossPages { max_pages: MAX_PAGES },
        measures: super::DESCRIPTOR.measures,
    };
    pager
        .collect(|cursor, number| {
            let (url, query) = (&url, &query);
            async move {
                let body = adapter
                    .http
                    .get_json(TOKENS.endpoint, |client| {
                        let request = client.get(url).query(query);
                        match &cursor {
                            Some(token) => request.query(&[("pageToken", token)]),
                            None => request,
                        }
                    })
                    .await?;
                let (records, next) =
                    parse::time_series_page(body.json(), TOKENS.endpoint, (window.start, window.end))?;
                let mut buckets: Vec<PageBucket> = Vec::new();
                if number == 1 {
                    buckets.extend(bucket_starts(window, &TOKENS).into_iter().map(|start| PageBucket {
                        start,
                        end: None,
                        records: Vec::new(),
                    }));
                }
                for record in records {
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
                Ok(Page { buckets, next })
            }
        })
        .await
}
