//! `export`: one dashboard table as RFC 4180 CSV.
//!
//! The SQL is the dashboards' own: each view names a panel of a
//! `dashboards/*.json` file, compiled into the binary, and its `rawSql` is
//! expanded as Grafana would (the database, the providers, the period; no
//! search and no cost limits) and run as it is. There is no second copy of
//! any query, so the CSV and the dashboard cannot drift apart (a test runs
//! both and compares them). Money is ClickHouse's exact decimal text; the
//! period is whole UTC days `[since, until)`, like `sync --since/--until`.

pub mod csv;
pub mod expand;

use std::cmp::Ordering;
use std::str::FromStr;

use chrono::{Duration, NaiveDate};
use rust_decimal::Decimal;
use serde_json::Value;

use crate::provider::Provider;
use crate::store::{ClickhouseClient, StoreError};
pub use csv::Table;
use expand::Vars;

/// A dashboard table that can be exported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum View {
    /// Overview, "Spend by account".
    Overview,
    /// Models, "Cost per model".
    Models,
    /// API keys, "Cost, tokens and requests per API key".
    Keys,
    /// Workspaces, "Workspaces: this period vs the previous one".
    Workspaces,
}

impl View {
    pub const ALL: [View; 4] = [View::Overview, View::Models, View::Keys, View::Workspaces];

    /// The dashboard file (under `dashboards/`) and its text.
    pub fn dashboard(self) -> (&'static str, &'static str) {
        match self {
            View::Overview => ("overview.json", include_str!("../../dashboards/overview.json")),
            View::Models => ("models.json", include_str!("../../dashboards/models.json")),
            View::Keys => ("api-keys.json", include_str!("../../dashboards/api-keys.json")),
            View::Workspaces => ("workspaces.json", include_str!("../../dashboards/workspaces.json")),
        }
    }

    /// The title of the exported panel.
    pub fn panel(self) -> &'static str {
        match self {
            View::Overview => "Spend by account",
            View::Models => "Cost per model",
            View::Keys => "Cost, tokens and requests per API key",
            View::Workspaces => "Workspaces: this period vs the previous one",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            View::Overview => "overview",
            View::Models => "models",
            View::Keys => "keys",
            View::Workspaces => "workspaces",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("dashboards/{file}: {detail} (the export reads its SQL from this dashboard)")]
    Dashboard { file: &'static str, detail: String },
    #[error("--since {since} must be before --until {until} (--until is exclusive)")]
    Period { since: NaiveDate, until: NaiveDate },
    #[error("--sort '{given}': the {view} view has no column '{column}'; columns: {columns}")]
    SortColumn {
        given: String,
        view: &'static str,
        column: String,
        columns: String,
    },
    #[error("--sort '{0}': use COLUMN, COLUMN:asc or COLUMN:desc")]
    SortSyntax(String),
    #[error("exporting the {view} view: {source}")]
    Store {
        view: &'static str,
        #[source]
        source: StoreError,
    },
    #[error("exporting the {view} view: ClickHouse answered in an unexpected form: {detail}")]
    Answer { view: &'static str, detail: String },
}

/// An ordering asked with `--sort`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sort {
    pub column: String,
    pub descending: bool,
}

impl FromStr for Sort {
    type Err = ExportError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (column, descending) = match text.rsplit_once(':') {
            Some((column, "desc")) => (column, true),
            Some((column, "asc")) => (column, false),
            Some(_) => return Err(ExportError::SortSyntax(text.to_string())),
            None => (text, false),
        };
        if column.is_empty() {
            return Err(ExportError::SortSyntax(text.to_string()));
        }
        Ok(Sort {
            column: column.to_string(),
            descending,
        })
    }
}

/// What to export.
#[derive(Clone, Debug)]
pub struct Request {
    pub view: View,
    /// First UTC day, inclusive.
    pub since: NaiveDate,
    /// Last UTC day, exclusive.
    pub until: NaiveDate,
    /// Empty: every provider with data (the dashboards' "All").
    pub providers: Vec<Provider>,
    /// Without it, the dashboard's own order.
    pub sort: Option<Sort>,
}

/// The panel's SQL as the dashboard JSON holds it.
pub fn panel_sql(view: View) -> Result<String, ExportError> {
    let (file, text) = view.dashboard();
    let broken = |detail: String| ExportError::Dashboard { file, detail };
    let dashboard: Value = serde_json::from_str(text).map_err(|e| broken(format!("not JSON: {e}")))?;
    let panel = dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["title"].as_str() == Some(view.panel()))
        .ok_or_else(|| broken(format!("no panel '{}'", view.panel())))?;
    panel["targets"][0]["rawSql"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| broken(format!("panel '{}' has no rawSql", view.panel())))
}

/// The SQL of the provider variable's "All" (its own query in the JSON).
fn provider_variable_sql(view: View) -> Result<String, ExportError> {
    let (file, text) = view.dashboard();
    let dashboard: Value = serde_json::from_str(text).map_err(|e| ExportError::Dashboard {
        file,
        detail: format!("not JSON: {e}"),
    })?;
    dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"].as_str() == Some("provider"))
        .and_then(|v| v["query"]["rawSql"].as_str().or_else(|| v["query"].as_str()))
        .map(str::to_string)
        .ok_or_else(|| ExportError::Dashboard {
            file,
            detail: "no provider variable with a query".into(),
        })
}

/// Runs the view's panel query and returns its table, sorted if asked.
pub async fn export(client: &ClickhouseClient, request: &Request) -> Result<Table, ExportError> {
    let view = request.view;
    if request.since >= request.until {
        return Err(ExportError::Period {
            since: request.since,
            until: request.until,
        });
    }
    let from = request.since.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
    // The last second of the last day: the panels compare `toDate($__toTime, 'UTC')`.
    let to = request.until.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc() - Duration::seconds(1);
    let mut vars: Vars = [
        ("database", vec![client.database().to_string()]),
        ("search", vec![String::new()]),
        ("min_cost", vec![String::new()]),
        ("max_cost", vec![String::new()]),
        ("period", vec!["day".to_string()]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let dashboard_error = |detail: String| ExportError::Dashboard {
        file: view.dashboard().0,
        detail,
    };
    let providers: Vec<String> = if request.providers.is_empty() {
        let sql = expand::expand(&provider_variable_sql(view)?, from, to, &vars).map_err(dashboard_error)?;
        let table = run(client, view, &sql).await?;
        table
            .rows
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
            .collect()
    } else {
        request.providers.iter().map(|p| p.as_str().to_string()).collect()
    };
    // An "All" over no data still runs, and matches nothing.
    let providers = if providers.is_empty() {
        vec![String::new()]
    } else {
        providers
    };
    vars.insert("provider".to_string(), providers);
    let sql = expand::expand(&panel_sql(view)?, from, to, &vars).map_err(dashboard_error)?;
    let mut table = run(client, view, &sql).await?;
    if let Some(sort) = &request.sort {
        sort_table(view, &mut table, sort)?;
    }
    Ok(table)
}

async fn run(client: &ClickhouseClient, view: View, sql: &str) -> Result<Table, ExportError> {
    let text = client
        .fetch_text("export query", sql, "TabSeparatedWithNamesAndTypes")
        .await
        .map_err(|source| ExportError::Store {
            view: view.as_str(),
            source,
        })?;
    let table = Table::from_tsv(&text).map_err(|detail| ExportError::Answer {
        view: view.as_str(),
        detail,
    })?;
    // A DateTime without a zone would print in the server's zone (rule 8).
    if let Some((column, kind)) = table
        .columns
        .iter()
        .zip(&table.types)
        .find(|(_, t)| t.contains("DateTime") && !t.contains("'UTC'"))
    {
        return Err(ExportError::Answer {
            view: view.as_str(),
            detail: format!("column {column} is {kind}, which prints in the server's time zone"),
        });
    }
    Ok(table)
}

/// Sorts by one column, by its type (numbers as numbers, money exactly);
/// equal values keep the dashboard's order, NULLs come last.
fn sort_table(view: View, table: &mut Table, sort: &Sort) -> Result<(), ExportError> {
    let index = table
        .columns
        .iter()
        .position(|c| *c == sort.column)
        .ok_or_else(|| ExportError::SortColumn {
            given: if sort.descending {
                format!("{}:desc", sort.column)
            } else {
                sort.column.clone()
            },
            view: view.as_str(),
            column: sort.column.clone(),
            columns: table.columns.join(", "),
        })?;
    let kind = table.types[index].clone();
    let numeric = ["Int", "Float", "Decimal"].iter().any(|k| kind.contains(k));
    let compare = |a: &str, b: &str| -> Ordering {
        if numeric {
            if let (Ok(x), Ok(y)) = (Decimal::from_str(a), Decimal::from_str(b)) {
                return x.cmp(&y);
            }
            if let (Ok(x), Ok(y)) = (a.parse::<f64>(), b.parse::<f64>()) {
                return x.total_cmp(&y);
            }
        }
        a.cmp(b)
    };
    table.rows.sort_by(|a, b| match (&a[index], &b[index]) {
        (Some(x), Some(y)) if sort.descending => compare(y, x),
        (Some(x), Some(y)) => compare(x, y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_view_reads_one_panel_of_its_dashboard() {
        for view in View::ALL {
            let sql = panel_sql(view).unwrap();
            assert!(sql.contains("usage_daily"), "{view:?}: {sql}");
            provider_variable_sql(view).unwrap();
        }
    }

    #[test]
    fn sort_is_validated_and_typed() {
        assert_eq!(
            "net_usd:desc".parse::<Sort>().unwrap(),
            Sort {
                column: "net_usd".into(),
                descending: true
            }
        );
        assert!(!"key".parse::<Sort>().unwrap().descending);
        assert!(matches!("x:down".parse::<Sort>(), Err(ExportError::SortSyntax(_))));
        let mut table = Table::from_tsv(
            "key\tnet_usd\tratio\nString\tDecimal(38, 9)\tNullable(Float64)\n\
             a\t9.5\t\\N\nb\t10.000000001\t0.25\nc\t-1\t2\n",
        )
        .unwrap();
        sort_table(View::Keys, &mut table, &"net_usd:desc".parse().unwrap()).unwrap();
        let keys = |t: &Table| t.rows.iter().map(|r| r[0].clone().unwrap()).collect::<Vec<_>>();
        assert_eq!(keys(&table), ["b", "a", "c"], "money sorts as numbers, not text");
        sort_table(View::Keys, &mut table, &"ratio".parse().unwrap()).unwrap();
        assert_eq!(keys(&table), ["b", "c", "a"], "NULL last");
        let err = sort_table(View::Keys, &mut table, &"cost".parse().unwrap()).unwrap_err();
        assert!(
            err.to_string().contains("no column 'cost'") && err.to_string().contains("net_usd"),
            "{err}"
        );
    }
}
