//! Request plumbing shared by the simulated providers: query parsing, bucket
//! windows, cursors, filters and `group_by` aggregation.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

use super::data::{Row, DAY, HOUR, MINUTE};

/// Query parameters in order. `key[]` and repeated `key` are the same array
/// (the OpenAI SDK sends brackets, OpenAI's cookbook sends repeats).
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(query: &str) -> Self {
        Params(
            url::form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.trim_end_matches("[]").to_string(), v.into_owned()))
                .collect(),
        )
    }

    /// A scalar parameter (the last one wins if repeated).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A bucket width in seconds.
pub(crate) fn width(text: &str) -> Option<i64> {
    match text {
        "1m" => Some(MINUTE),
        "1h" => Some(HOUR),
        "1d" => Some(DAY),
        _ => None,
    }
}

/// (default, max) bucket count per page for a usage width; both providers
/// document the same numbers.
pub(crate) fn usage_limits(width: i64) -> (i64, i64) {
    match width {
        MINUTE => (60, 1440),
        HOUR => (24, 168),
        _ => (7, 31),
    }
}

/// Parses and checks `limit` against its documented range.
pub(crate) fn limit(params: &Params, default: i64, max: i64) -> Result<i64, String> {
    match params.get("limit") {
        None => Ok(default),
        Some(text) => match text.parse::<i64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(format!(
                "limit must be an integer between 1 and {max} for this bucket_width, got '{text}'"
            )),
        },
    }
}

/// A run of `count` buckets of `width` seconds starting at `first`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Buckets {
    pub first: i64,
    pub width: i64,
    pub count: i64,
}

/// One page: the bucket starts it covers and where the next page starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Page {
    pub starts: Vec<i64>,
    pub next: Option<i64>,
}

impl Buckets {
    /// The page that begins at `cursor` (or the first bucket). A cursor that
    /// does not name a bucket of this run is rejected rather than guessed.
    pub fn page(&self, limit: i64, cursor: Option<i64>) -> Result<Page, String> {
        let index = match cursor {
            None => 0,
            Some(at) => {
                let offset = at - self.first;
                if offset < 0 || offset % self.width != 0 || offset / self.width >= self.count {
                    return Err("page cursor does not belong to this query".into());
                }
                offset / self.width
            }
        };
        let stop = (index + limit).min(self.count);
        let starts = (index..stop).map(|i| self.first + i * self.width).collect();
        let next = (stop < self.count).then(|| self.first + stop * self.width);
        Ok(Page { starts, next })
    }
}

/// One page of a row-paged answer (APIs whose `limit` counts rows, not
/// buckets): rows `[offset, offset + limit)` and the offset of the next page.
/// A cursor past the end is rejected, like a foreign bucket cursor.
pub(crate) fn row_page(
    total: usize,
    limit: usize,
    cursor: Option<usize>,
) -> Result<(usize, usize, Option<usize>), String> {
    let start = cursor.unwrap_or(0);
    if cursor.is_some() && start >= total {
        return Err("page cursor does not belong to this query".into());
    }
    let stop = (start + limit).min(total);
    Ok((start, stop, (stop < total).then_some(stop)))
}

pub(crate) fn encode_cursor(payload: &str) -> String {
    format!("page_{}", STANDARD.encode(payload))
}

pub(crate) fn decode_cursor(cursor: &str) -> Option<String> {
    let body = cursor.strip_prefix("page_")?;
    String::from_utf8(STANDARD.decode(body).ok()?).ok()
}

/// Aligned hour starts `h` with `lo <= h < hi`.
pub(crate) fn hours(lo: i64, hi: i64) -> impl Iterator<Item = i64> {
    let first = super::data::floor(lo + HOUR - 1, HOUR);
    (first..hi.max(first)).step_by(HOUR as usize)
}

/// A named `group_by` value and the dimensions it reveals (Anthropic's
/// `description` reveals six fields at once).
pub(crate) struct Group {
    pub name: &'static str,
    pub dims: &'static [usize],
}

/// Which dimensions stay in the answer for the requested `group_by` list.
pub(crate) fn group_mask(groups: &[Group], requested: &[&str], ndims: usize) -> Result<Vec<bool>, String> {
    let mut mask = vec![false; ndims];
    for name in requested {
        let group = groups.iter().find(|g| g.name == *name).ok_or_else(|| {
            let allowed: Vec<&str> = groups.iter().map(|g| g.name).collect();
            format!("invalid group_by value '{name}'; allowed: {}", allowed.join(", "))
        })?;
        for &d in group.dims {
            mask[d] = true;
        }
    }
    Ok(mask)
}

/// A filter parameter: keep rows whose dimension `dim` is one of `values`.
pub(crate) struct Filter {
    pub dim: usize,
    pub values: Vec<String>,
}

pub(crate) fn filters(params: &Params, spec: &[(&str, usize)]) -> Vec<Filter> {
    spec.iter()
        .filter_map(|(param, dim)| {
            let values: Vec<String> = params.all(param).into_iter().map(str::to_string).collect();
            (!values.is_empty()).then_some(Filter { dim: *dim, values })
        })
        .collect()
}

fn dim_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(crate) fn keep(row: &Row, filters: &[Filter]) -> bool {
    filters
        .iter()
        .all(|f| dim_text(&row.dims[f.dim]).is_some_and(|t| f.values.contains(&t)))
}

/// Sums rows that agree on every grouped dimension; ungrouped dimensions come
/// back `null`. The output order is stable (by key text).
pub(crate) fn aggregate(rows: impl IntoIterator<Item = Row>, mask: &[bool]) -> Vec<Row> {
    let mut out: BTreeMap<String, Row> = BTreeMap::new();
    for row in rows {
        let dims: Vec<Value> = row
            .dims
            .into_iter()
            .zip(mask)
            .map(|(v, &grouped)| if grouped { v } else { Value::Null })
            .collect();
        let key = Value::Array(dims.clone()).to_string();
        match out.get_mut(&key) {
            Some(acc) => {
                for (a, v) in acc.vals.iter_mut().zip(&row.vals) {
                    *a += v;
                }
                acc.amount += row.amount;
                acc.list += row.list;
            }
            None => {
                out.insert(
                    key,
                    Row {
                        dims,
                        vals: row.vals,
                        amount: row.amount,
                        list: row.list,
                    },
                );
            }
        }
    }
    out.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    #[test]
    fn brackets_and_repeats_are_the_same_array() {
        let p = Params::parse("group_by[]=model&group_by=project_id&limit=3&limit=4");
        assert_eq!(p.all("group_by"), vec!["model", "project_id"]);
        assert_eq!(p.get("limit"), Some("4"));
        assert_eq!(p.get("page"), None);
    }

    #[test]
    fn pages_cover_every_bucket_once_and_reject_foreign_cursors() {
        let b = Buckets {
            first: 3600,
            width: 3600,
            count: 5,
        };
        let p1 = b.page(2, None).unwrap();
        assert_eq!(p1.starts, vec![3600, 7200]);
        let p2 = b.page(2, p1.next).unwrap();
        let p3 = b.page(2, p2.next).unwrap();
        assert_eq!(p3.starts, vec![5 * 3600]);
        assert_eq!(p3.next, None);
        assert!(b.page(2, Some(3601)).is_err());
        assert!(b.page(2, Some(0)).is_err());
        assert!(b.page(2, Some(6 * 3600)).is_err());
        assert_eq!(decode_cursor(&encode_cursor("42")).as_deref(), Some("42"));
        assert_eq!(decode_cursor("garbage"), None);
    }

    #[test]
    fn row_pages_cover_every_row_once() {
        assert_eq!(row_page(5, 2, None), Ok((0, 2, Some(2))));
        assert_eq!(row_page(5, 2, Some(4)), Ok((4, 5, None)));
        assert_eq!(row_page(0, 2, None), Ok((0, 0, None)));
        assert!(row_page(5, 2, Some(5)).is_err());
    }

    #[test]
    fn hours_are_aligned_and_half_open() {
        assert_eq!(hours(0, 7200).collect::<Vec<_>>(), vec![0, 3600]);
        assert_eq!(hours(1, 7201).collect::<Vec<_>>(), vec![3600, 7200]);
        assert_eq!(hours(60, 120).count(), 0);
        assert_eq!(hours(100, 0).count(), 0);
    }

    #[test]
    fn aggregation_nulls_ungrouped_dims_and_keeps_totals() {
        let row = |a: &str, b: &str, v: i64| Row {
            dims: vec![Value::from(a), Value::from(b)],
            vals: vec![v],
            amount: Decimal::new(v, 3),
            list: Decimal::new(v, 2),
        };
        let rows = vec![row("x", "p", 1), row("x", "q", 2), row("y", "p", 4)];
        let by_first = aggregate(rows.clone(), &[true, false]);
        assert_eq!(by_first.len(), 2);
        assert_eq!(by_first[0].dims, vec![Value::from("x"), Value::Null]);
        assert_eq!(by_first[0].vals, vec![3]);
        let all = aggregate(rows, &[false, false]);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].amount, Decimal::new(7, 3));
        assert_eq!(all[0].list, Decimal::new(7, 2));
    }

    #[test]
    fn unknown_group_by_is_named_in_the_error() {
        let groups = [Group {
            name: "model",
            dims: &[0],
        }];
        let err = group_mask(&groups, &["color"], 1).unwrap_err();
        assert!(err.contains("'color'") && err.contains("model"));
    }
}
