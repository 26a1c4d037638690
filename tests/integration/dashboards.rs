//! The Grafana dashboards (`dashboards/*.json`) against the real ClickHouse
//! 18.16: every ClickHouse query of every panel and template variable is
//! expanded the way Grafana and the ClickHouse data source plugin expand it
//! (template variables, then the plugin's macros), run on a database filled by
//! a real simulated sync, and must succeed and return rows. Panels that show
//! totals must equal the simulator's ground truth to the last decimal.
//!
//! A dashboard added to `dashboards/` is picked up by itself: if one of its
//! queries does not run on 18.16, or uses a macro or variable the expander
//! does not know, this test fails.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use tokentra_sync::store::ClickhouseClient;

use crate::support::{self, TestConfig, TruthRow};

const PROVIDERS: [&str; 2] = ["openai", "anthropic"];
const ORGS: [&str; 2] = ["org-1", "org-2"];

/// Every `dashboards/*.json`, parsed, by file name.
pub fn load_dashboards() -> Vec<(String, Value)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("dashboards/ exists") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let json: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
        out.push((path.file_name().unwrap().to_string_lossy().to_string(), json));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!out.is_empty(), "no dashboards in {}", dir.display());
    out
}

/// One query target of a panel.
pub struct PanelQuery {
    pub panel: String,
    pub ref_id: String,
    /// `grafana-clickhouse-datasource` or `prometheus`.
    pub datasource: String,
    /// `rawSql` for ClickHouse, `expr` for Prometheus.
    pub text: String,
}

/// The queries of every panel, rows' nested panels included.
pub fn panel_queries(dashboard: &Value) -> Vec<PanelQuery> {
    fn walk(panels: &[Value], out: &mut Vec<PanelQuery>) {
        for panel in panels {
            if let Some(nested) = panel["panels"].as_array() {
                walk(nested, out);
            }
            let title = panel["title"].as_str().unwrap_or("").to_string();
            for target in panel["targets"].as_array().into_iter().flatten() {
                let datasource = target["datasource"]["type"]
                    .as_str()
                    .or_else(|| panel["datasource"]["type"].as_str())
                    .unwrap_or_else(|| panic!("panel '{title}' has a target without a datasource type"))
                    .to_string();
                let text = target["rawSql"]
                    .as_str()
                    .or_else(|| target["expr"].as_str())
                    .unwrap_or_else(|| panic!("panel '{title}' has a target without rawSql or expr"))
                    .to_string();
                out.push(PanelQuery {
                    panel: title.clone(),
                    ref_id: target["refId"].as_str().unwrap_or("A").to_string(),
                    datasource,
                    text,
                });
            }
        }
    }
    let mut out = Vec::new();
    walk(
        dashboard["panels"].as_array().expect("a dashboard has panels"),
        &mut out,
    );
    out
}

/// The dashboard's time range, in UTC.
#[derive(Clone, Copy, Debug)]
pub struct TimeRange {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// Values of template variables (a multi-value variable has several).
pub type Vars = BTreeMap<String, Vec<String>>;

/// Expands Grafana template variables (`$var`, `${var}`, `${var:format}`)
/// and the ClickHouse plugin's macros, as `pkg/macros/macros.go` of
/// grafana-clickhouse-datasource writes them. Anything unknown is an error,
/// so a dashboard cannot pass by using something this expander skips.
pub fn expand(text: &str, range: TimeRange, vars: &Vars) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| format!("unclosed ${{ in {text}"))?;
            let (name, format) = match body[..end].split_once(':') {
                Some((name, format)) => (name, Some(format)),
                None => (&body[..end], None),
            };
            out.push_str(&variable(name, format, vars)?);
            rest = &body[end + 1..];
        } else if let Some(macro_rest) = after.strip_prefix("__") {
            let name_len = macro_rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(macro_rest.len());
            let name = &macro_rest[..name_len];
            let mut tail = &macro_rest[name_len..];
            let mut args = Vec::new();
            if let Some(inner) = tail.strip_prefix('(') {
                let close = inner
                    .find(')')
                    .ok_or_else(|| format!("unclosed $__{name}( in {text}"))?;
                args = inner[..close]
                    .split(',')
                    .map(|a| a.trim().to_string())
                    .filter(|a| !a.is_empty())
                    .collect();
                tail = &inner[close + 1..];
            }
            out.push_str(&plugin_macro(name, &args, range)?);
            rest = tail;
        } else {
            let name_len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if name_len == 0 {
                out.push('$');
            } else {
                out.push_str(&variable(&after[..name_len], None, vars)?);
            }
            rest = &after[name_len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn variable(name: &str, format: Option<&str>, vars: &Vars) -> Result<String, String> {
    let values = vars
        .get(name)
        .ok_or_else(|| format!("unknown template variable ${name}"))?;
    let quoted = |quote: fn(&str) -> String| values.iter().map(|v| quote(v)).collect::<Vec<_>>().join(",");
    Ok(match format {
        None | Some("raw") | Some("csv") => values.join(","),
        // Grafana's singlequote: each value in '...', ' escaped as \'.
        Some("singlequote") => quoted(|v| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))),
        Some("sqlstring") => quoted(|v| format!("'{}'", v.replace('\'', "''"))),
        Some("regex") => {
            let escaped: Vec<String> = values.iter().map(|v| regex_escape(v)).collect();
            if escaped.len() == 1 {
                escaped[0].clone()
            } else {
                format!("({})", escaped.join("|"))
            }
        }
        Some(other) => return Err(format!("unknown variable format ${{{name}:{other}}}")),
    })
}

fn regex_escape(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The plugin's macros (seconds precision; dates as the plugin formats them).
fn plugin_macro(name: &str, args: &[String], range: TimeRange) -> Result<String, String> {
    let datetime = |t: DateTime<Utc>| format!("toDateTime({})", t.timestamp());
    let date = |t: DateTime<Utc>| format!("toDate('{}')", t.format("%Y-%m-%d"));
    let one_arg = || {
        if args.len() == 1 {
            Ok(args[0].as_str())
        } else {
            Err(format!("$__{name} takes one argument, got {args:?}"))
        }
    };
    Ok(match name {
        "fromTime" => datetime(range.from),
        "toTime" => datetime(range.to),
        "timeFilter" => {
            let c = one_arg()?;
            format!("{c} >= {} AND {c} <= {}", datetime(range.from), datetime(range.to))
        }
        "dateFilter" => {
            let c = one_arg()?;
            format!("{c} >= {} AND {c} <= {}", date(range.from), date(range.to))
        }
        "timeInterval" => format!("toStartOfInterval(toDateTime({}), INTERVAL 3600 second)", one_arg()?),
        "interval_s" => "3600".to_string(),
        other => return Err(format!("the expander does not know the macro $__{other}")),
    })
}

/// A query result: column names and rows of text (TabSeparatedWithNames).
#[derive(Debug)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    fn col(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", self.columns))
    }

    pub fn get(&self, row: usize, name: &str) -> &str {
        &self.rows[row][self.col(name)]
    }

    pub fn decimal(&self, row: usize, name: &str) -> Decimal {
        dec(self.get(row, name))
    }

    pub fn int(&self, row: usize, name: &str) -> i64 {
        self.get(row, name)
            .parse()
            .unwrap_or_else(|_| panic!("{name} is not an integer: {}", self.get(row, name)))
    }

    pub fn float(&self, row: usize, name: &str) -> f64 {
        self.get(row, name)
            .parse()
            .unwrap_or_else(|_| panic!("{name} is not a number: {}", self.get(row, name)))
    }

    /// The row whose `key` column is `value`.
    pub fn row_where(&self, key: &str, value: &str) -> usize {
        let c = self.col(key);
        self.rows
            .iter()
            .position(|r| r[c] == value)
            .unwrap_or_else(|| panic!("no row with {key} = {value}: {:?}", self.rows))
    }

    pub fn column_values(&self, name: &str) -> Vec<String> {
        let c = self.col(name);
        self.rows.iter().map(|r| r[c].clone()).collect()
    }

    pub fn sum_decimal(&self, name: &str) -> Decimal {
        (0..self.rows.len()).map(|r| self.decimal(r, name)).sum()
    }

    pub fn sum_int(&self, name: &str) -> i64 {
        (0..self.rows.len()).map(|r| self.int(r, name)).sum()
    }
}

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text)
        .unwrap_or_else(|_| panic!("not a decimal: {text}"))
        .normalize()
}

/// Runs one SELECT on the test server; the error is the server's message.
pub async fn run_select(client: &ClickhouseClient, sql: &str) -> Result<Table, String> {
    let response = reqwest::Client::new()
        .post(client.url())
        .body(format!("{sql}\nFORMAT TabSeparatedWithNames"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(body);
    }
    let mut lines = body.lines();
    let columns = lines.next().unwrap_or("").split('\t').map(str::to_string).collect();
    let rows = lines.map(|l| l.split('\t').map(str::to_string).collect()).collect();
    Ok(Table { columns, rows })
}

/// The template variables of a dashboard, resolved in order as Grafana does
/// on load: constants and text boxes from the JSON, custom variables from
/// their current value, query variables set to "All" from their own query
/// (so their values come from the data). `overrides` win.
async fn resolve_vars(
    client: &ClickhouseClient,
    dashboard: &Value,
    range: TimeRange,
    overrides: &Vars,
) -> Result<Vars, String> {
    let mut vars = Vars::new();
    for var in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        let name = var["name"].as_str().expect("a variable has a name").to_string();
        if let Some(values) = overrides.get(&name) {
            vars.insert(name, values.clone());
            continue;
        }
        let values = match var["type"].as_str().unwrap_or("") {
            "datasource" => continue,
            "constant" => vec![var["query"].as_str().unwrap_or("").to_string()],
            "textbox" | "custom" => match &var["current"]["value"] {
                Value::Array(items) => items.iter().map(|v| v.as_str().unwrap_or("").to_string()).collect(),
                v => vec![v.as_str().unwrap_or("").to_string()],
            },
            "query" => {
                let sql = var["query"]["rawSql"]
                    .as_str()
                    .or_else(|| var["query"].as_str())
                    .ok_or_else(|| format!("variable {name} has no SQL"))?;
                let expanded = expand(sql, range, &vars)?;
                let table = run_select(client, &expanded)
                    .await
                    .map_err(|e| format!("variable {name}: {e}\n{expanded}"))?;
                table.rows.iter().map(|r| r[0].clone()).collect()
            }
            other => return Err(format!("variable {name}: type {other} is not handled by the test")),
        };
        vars.insert(name, values);
    }
    Ok(vars)
}

/// The result of every ClickHouse panel query of one dashboard, by
/// "panel/refId"; failures are collected, not thrown, to report them all.
pub async fn run_dashboard(
    client: &ClickhouseClient,
    dashboard: &Value,
    range: TimeRange,
    overrides: &Vars,
    failures: &mut Vec<String>,
) -> BTreeMap<String, Table> {
    let uid = dashboard["uid"].as_str().unwrap_or("?");
    let mut results = BTreeMap::new();
    let vars = match resolve_vars(client, dashboard, range, overrides).await {
        Ok(vars) => vars,
        Err(e) => {
            failures.push(format!("{uid}: {e}"));
            return results;
        }
    };
    for q in panel_queries(dashboard) {
        if q.datasource != "grafana-clickhouse-datasource" {
            assert_eq!(q.datasource, "prometheus", "{uid} '{}': unknown datasource", q.panel);
            continue;
        }
        let key = format!("{}/{}", q.panel, q.ref_id);
        let sql = match expand(&q.text, range, &vars) {
            Ok(sql) => sql,
            Err(e) => {
                failures.push(format!("{uid} '{key}': {e}"));
                continue;
            }
        };
        match run_select(client, &sql).await {
            Ok(table) => {
                results.insert(key, table);
            }
            Err(e) => failures.push(format!("{uid} '{key}' failed on ClickHouse: {e}\n{sql}")),
        }
    }
    results
}

/// A one-shot `sync` of the real binary; `window` is `--since` and `--until`
/// (without it, the incremental sync that sets the watermark).
async fn run_cli_sync(config: &TestConfig, window: &[&str]) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokentra-sync"))
        .args(["sync", "-c"])
        .arg(config.write())
        .args(window)
        .env("TOKENTRA_LOG", "warn")
        .output()
        .await
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "sync failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Rows of a provider the dashboards never name, written like the writer
/// writes them (the view fills usage_daily): billed cost, a credit, an idle
/// key (a live usage row with zero measures) and images with their bill.
async fn insert_other_provider(client: &ClickhouseClient, day: NaiveDate) {
    let t = format!("{day} 00:00:00");
    let rows = [
        // record_key, record_type, granularity, model, service, key id, key hint, unit, quantity, cost, estimated, credits, source
        (
            1,
            "cost",
            "1d",
            "amazon.titan-text-express",
            "bedrock",
            "",
            "",
            "",
            "0",
            "2.5",
            "0",
            "0",
            "billed",
        ),
        (
            2,
            "credit",
            "1d",
            "bedrock-general",
            "bedrock",
            "",
            "",
            "",
            "0",
            "0",
            "0",
            "1.25",
            "billed",
        ),
        (
            3,
            "usage",
            "1h",
            "amazon.titan-text-express",
            "bedrock",
            "AKIAIDLEKEY0001",
            "AKIA...0001",
            "",
            "0",
            "0",
            "0",
            "0",
            "",
        ),
        (
            4,
            "usage",
            "1h",
            "stability.sd3-large",
            "images",
            "",
            "",
            "images",
            "4",
            "0",
            "0.32",
            "0",
            "",
        ),
        (
            5,
            "cost",
            "1d",
            "stability.sd3-large",
            "images",
            "",
            "",
            "",
            "0",
            "0.36",
            "0",
            "0",
            "billed",
        ),
    ];
    let values: Vec<String> = rows
        .iter()
        .map(|(key, kind, grain, model, service, key_id, hint, unit, quantity, cost, estimated, credits, source)| {
            format!(
                "('bedrock-dash', 'aws_bedrock', '{kind}', 'test', '{t}', '{t}', '{grain}', {key}, '{model}', '{model}', \
                 '{service}', '{key_id}', '{hint}', '{unit}', {quantity}, {cost}, {estimated}, {credits}, '{source}', 'USD', \
                 1, 1, now())"
            )
        })
        .collect();
    support::query_tsv(
        client,
        &format!(
            "INSERT INTO {{db}}.usage_records (connection_id, provider, record_type, endpoint, bucket_start, bucket_end, \
             granularity, record_key, model, model_raw, service, api_key_id, api_key_hint, unit, quantity, cost, \
             estimated_cost, credits, cost_source, currency, sign, version, synced_at) VALUES {}",
            values.join(", ")
        ),
    )
    .await;
}

/// The simulator's truth for all four accounts over `[since, until)`.
async fn truth(
    sim: &tokentra_sync::simulator::SimHandle,
    since: NaiveDate,
    until: NaiveDate,
) -> Vec<(&'static str, TruthRow)> {
    let mut out = Vec::new();
    for provider in PROVIDERS {
        for org in ORGS {
            let rows = support::truth_days(sim, provider, org, &since.to_string(), &until.to_string()).await;
            out.extend(rows.into_iter().map(|r| (provider, r)));
        }
    }
    out
}

fn total_cost<'a>(rows: impl IntoIterator<Item = &'a (&'static str, TruthRow)>) -> Decimal {
    rows.into_iter().map(|(_, r)| dec(&r.cost)).sum::<Decimal>().normalize()
}

fn print_results(uid: &str, results: &BTreeMap<String, Table>) {
    for (key, table) in results {
        let first: Vec<String> = table
            .rows
            .first()
            .map(|r| table.columns.iter().zip(r).map(|(c, v)| format!("{c}={v}")).collect())
            .unwrap_or_default();
        println!(
            "{uid} | {key} | {} row(s) | {}",
            table.rows.len(),
            first.join(" ").chars().take(400).collect::<String>()
        );
    }
}

#[actix_rt::test]
async fn dashboard_queries_run_on_18_16_and_totals_match_the_simulator() {
    let sim = support::start_sim(21, 2).await;
    let accounts = support::sim_accounts(&sim, &ORGS, &PROVIDERS);
    let config = TestConfig::new("dashboards", &accounts);
    let client = config.client();
    let today = Utc::now().date_naive();
    // Two periods of 7 days: the dashboards' period and the one before it.
    let (previous_from, from, until) = (today - Duration::days(14), today - Duration::days(7), today);
    let (since, until_text) = (previous_from.to_string(), until.to_string());
    run_cli_sync(&config, &["--since", &since, "--until", &until_text]).await;
    // The incremental sync stores a watermark (and today's complete hours,
    // outside the dashboards' period).
    run_cli_sync(&config, &[]).await;
    insert_other_provider(&client, today - Duration::days(3)).await;
    let named_workspace = support::query_tsv(
        &client,
        "SELECT workspace_id FROM {db}.usage_daily WHERE connection_id = 'anthropic-org-2' AND workspace_id != '' \
         GROUP BY workspace_id ORDER BY workspace_id LIMIT 1",
    )
    .await
    .trim()
    .to_string();
    assert!(!named_workspace.is_empty(), "the simulator has Anthropic workspaces");
    support::query_tsv(
        &client,
        &format!(
            "INSERT INTO {{db}}.workspace_names VALUES \
             ('anthropic-org-2', 'anthropic', '{named_workspace}', 'Old name', now() - 86400), \
             ('anthropic-org-2', 'anthropic', '{named_workspace}', 'Research', now() + 60)"
        ),
    )
    .await;

    let period = TimeRange {
        from: from.and_hms_opt(0, 0, 0).unwrap().and_utc(),
        to: until.and_hms_opt(0, 0, 0).unwrap().and_utc() - Duration::seconds(1),
    };
    let last_hour = TimeRange {
        from: Utc::now() - Duration::hours(1),
        to: Utc::now() + Duration::minutes(1),
    };
    let database = vec![client.database().to_string()];
    let base: Vars = [("database".to_string(), database.clone())].into();

    // 1. Every query of every dashboard runs and returns rows.
    let mut failures = Vec::new();
    let mut all = BTreeMap::new();
    let dashboards = load_dashboards();
    for (file, dashboard) in &dashboards {
        let uid = dashboard["uid"]
            .as_str()
            .unwrap_or_else(|| panic!("{file} has no uid"))
            .to_string();
        let range = if uid == "tokentra-sync-health" {
            last_hour
        } else {
            period
        };
        let results = run_dashboard(&client, dashboard, range, &base, &mut failures).await;
        print_results(&uid, &results);
        for (key, table) in &results {
            if table.rows.is_empty() {
                failures.push(format!("{uid} '{key}' returned no rows on the simulated data"));
            }
        }
        all.insert(uid, results);
    }
    assert!(
        failures.is_empty(),
        "dashboard queries failed:\n{}",
        failures.join("\n\n")
    );
    for uid in [
        "tokentra-overview",
        "tokentra-models",
        "tokentra-api-keys",
        "tokentra-workspaces",
        "tokentra-sync-health",
    ] {
        assert!(all.contains_key(uid), "dashboard {uid} is missing");
    }
    let panel = |uid: &str, title: &str| -> &Table {
        all[uid]
            .get(&format!("{title}/A"))
            .unwrap_or_else(|| panic!("{uid} has no panel '{title}'"))
    };

    // 2. Totals equal the simulator's truth (plus the other provider's rows).
    let current = truth(&sim, from, until).await;
    let previous = truth(&sim, previous_from, from).await;
    let bedrock_billed = dec("2.86");
    let bedrock_credits = dec("1.25");
    let sim_current = total_cost(&current);
    let sim_previous = total_cost(&previous);
    let billed = sim_current + bedrock_billed;
    let net = billed - bedrock_credits;
    assert!(sim_current > Decimal::ZERO && sim_previous > Decimal::ZERO);

    let spend = panel("tokentra-overview", "Spend in period");
    assert_eq!(spend.decimal(0, "billed_usd"), billed.normalize());
    assert_eq!(spend.decimal(0, "credits_usd"), bedrock_credits);
    assert_eq!(spend.decimal(0, "net_usd"), net.normalize());

    let versus = panel("tokentra-overview", "This period vs the previous one");
    assert_eq!(versus.decimal(0, "current_net_usd"), net.normalize());
    assert_eq!(versus.decimal(0, "previous_net_usd"), sim_previous);
    assert_eq!(versus.decimal(0, "change_usd"), (net - sim_previous).normalize());
    let direction = if net > sim_previous { "up" } else { "down" };
    assert_eq!(versus.get(0, "direction"), direction);

    let by_provider = panel("tokentra-overview", "Spend by provider");
    let providers: BTreeSet<String> = by_provider.column_values("provider").into_iter().collect();
    assert_eq!(
        providers,
        ["anthropic", "aws_bedrock", "openai"].map(String::from).into(),
        "a provider no dashboard names shows up by itself"
    );
    for provider in PROVIDERS {
        let row = by_provider.row_where("provider", provider);
        let expected = total_cost(current.iter().filter(|(p, _)| *p == provider));
        assert_eq!(by_provider.decimal(row, "billed_usd"), expected, "{provider}");
        assert_eq!(by_provider.decimal(row, "net_usd"), expected, "{provider}");
    }
    let row = by_provider.row_where("provider", "aws_bedrock");
    assert_eq!(by_provider.decimal(row, "billed_usd"), bedrock_billed);
    assert_eq!(by_provider.decimal(row, "credits_usd"), bedrock_credits);
    assert_eq!(by_provider.decimal(row, "net_usd"), dec("1.61"));
    assert_eq!(by_provider.decimal(row, "estimated_usd"), dec("0.32"));
    let by_account = panel("tokentra-overview", "Spend by account");
    assert_eq!(
        by_account.rows.len(),
        5,
        "four simulated accounts and the other provider's"
    );
    assert_eq!(by_account.sum_decimal("net_usd"), net.normalize());

    // Models: every model's cost, tokens and requests; cost per 1M tokens.
    let mut per_model: BTreeMap<String, (Decimal, i64, i64, i64)> = BTreeMap::new();
    for (_, r) in current.iter().filter(|(_, r)| !r.model.is_empty()) {
        let e = per_model.entry(r.model.clone()).or_default();
        e.0 += dec(&r.cost);
        e.1 += r.input_tokens;
        e.2 += r.output_tokens;
        e.3 += r.requests;
    }
    let models = panel("tokentra-models", "Cost per model");
    for (model, (cost, input, output, requests)) in &per_model {
        let row = models.row_where("model", model);
        assert_eq!(models.decimal(row, "net_usd"), cost.normalize(), "{model}");
        assert_eq!(models.int(row, "input_tokens"), *input, "{model}");
        assert_eq!(models.int(row, "output_tokens"), *output, "{model}");
        assert_eq!(models.int(row, "requests"), *requests, "{model}");
        let tokens = input + output;
        if tokens > 0 {
            let expected = f64::try_from(*cost).unwrap() * 1e6 / tokens as f64;
            let got = models.float(row, "net_usd_per_1m_tokens");
            assert!(
                (got - expected).abs() <= expected.abs() * 1e-9,
                "{model}: {got} != {expected}"
            );
        }
        if *requests > 0 {
            let expected = tokens as f64 / *requests as f64;
            let got = models.float(row, "avg_tokens_per_request");
            assert!(
                (got - expected).abs() <= expected * 1e-12,
                "{model}: {got} != {expected}"
            );
        } else {
            assert_eq!(
                models.get(row, "avg_tokens_per_request"),
                "\\N",
                "{model}: no requests reported"
            );
        }
    }
    let cheapest = per_model
        .iter()
        .filter(|(_, (cost, i, o, _))| *cost > Decimal::ZERO && i + o > 0)
        .map(|(m, (cost, i, o, _))| (f64::try_from(*cost).unwrap() * 1e6 / (i + o) as f64, m.clone()))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .expect("some model has cost and tokens");
    let efficient = panel("tokentra-models", "Most efficient model");
    assert_eq!(efficient.get(0, "model"), cheapest.1);
    assert!((efficient.float(0, "net_usd_per_1m_tokens") - cheapest.0).abs() <= cheapest.0 * 1e-9);
    let images = panel("tokentra-models", "Image cost per image");
    assert_eq!(images.rows.len(), 1);
    assert_eq!(images.get(0, "model"), "stability.sd3-large");
    assert_eq!(images.decimal(0, "images"), dec("4"));
    assert_eq!(images.decimal(0, "net_usd"), dec("0.36"));
    assert!((images.float(0, "net_usd_per_image") - 0.09).abs() < 1e-12);
    assert!((images.float(0, "estimated_usd_per_image") - 0.08).abs() < 1e-12);
    // Anthropic web search: usage counts requests under the searching model,
    // the bill has its own line without a model; both meet on the service.
    let units = panel("tokentra-models", "Cost per unit (non-token usage)");
    let web = (0..units.rows.len())
        .find(|&r| units.get(r, "provider") == "anthropic" && units.get(r, "service") == "web_search")
        .expect("a web search row");
    let web_truth = total_cost(current.iter().filter(|(p, r)| *p == "anthropic" && r.model.is_empty()));
    assert!(web_truth > Decimal::ZERO);
    assert_eq!(units.decimal(web, "net_usd"), web_truth);
    assert_eq!(units.get(web, "unit"), "requests");
    assert!(units.decimal(web, "quantity") > Decimal::ZERO);

    // API keys: the per-key table adds up to the totals; the idle key is found.
    let keys = panel("tokentra-api-keys", "Cost, tokens and requests per API key");
    assert_eq!(keys.sum_decimal("net_usd"), net.normalize());
    let sim_tokens: i64 = current.iter().map(|(_, r)| r.input_tokens + r.output_tokens).sum();
    assert_eq!(keys.sum_int("input_tokens") + keys.sum_int("output_tokens"), sim_tokens);
    assert_eq!(
        keys.sum_int("requests"),
        current.iter().map(|(_, r)| r.requests).sum::<i64>()
    );
    let idle = panel("tokentra-api-keys", "Idle keys");
    assert_eq!(idle.column_values("key"), vec!["AKIA...0001".to_string()]);
    assert_eq!(idle.int(0, "live_rows"), 1);

    // Workspaces: both periods add up; the named workspace shows its latest name.
    let ws = panel("tokentra-workspaces", "Workspaces: this period vs the previous one");
    assert_eq!(ws.sum_decimal("current_net_usd"), net.normalize());
    assert_eq!(ws.sum_decimal("previous_net_usd"), sim_previous);
    let named = ws.row_where("workspace_id", &named_workspace);
    assert_eq!(ws.get(named, "workspace"), "Research");
    assert!(
        ws.column_values("workspace").iter().any(|w| w.ends_with("(org-1)")),
        "the names the sync pulled from the simulator show"
    );
    assert!(
        ws.column_values("workspace")
            .contains(&"anthropic-org-1 (default)".to_string()),
        "usage outside any workspace shows as its account's default"
    );

    // Sync health: one successful run per account, rows as stored.
    let accounts = panel("tokentra-sync-health", "Accounts");
    assert_eq!(accounts.rows.len(), 4);
    for row in 0..4 {
        assert_eq!(accounts.int(row, "failed"), 0);
        assert!(accounts.int(row, "runs") >= 1);
    }
    let stored = support::count(
        &client,
        "SELECT count() FROM {db}.usage_records WHERE connection_id != 'bedrock-dash'",
    )
    .await;
    assert_eq!(accounts.sum_int("rows_written") as u64, stored);
    let log = panel("tokentra-sync-health", "Sync log");
    assert_eq!(log.sum_int("rows_written") as u64, stored);
    let watermarks = panel("tokentra-sync-health", "Watermarks");
    assert_eq!(
        watermarks.rows.len(),
        4,
        "the incremental sync set a watermark per account"
    );

    // 3. Filters: provider, cost range and search change what the panels show.
    let mut failures = Vec::new();
    let overview = &dashboards
        .iter()
        .find(|(_, d)| d["uid"] == "tokentra-overview")
        .unwrap()
        .1;
    let only_openai: Vars = [
        ("database".to_string(), database.clone()),
        ("provider".to_string(), vec!["openai".to_string()]),
    ]
    .into();
    let filtered = run_dashboard(&client, overview, period, &only_openai, &mut failures).await;
    let openai = total_cost(current.iter().filter(|(p, _)| *p == "openai"));
    assert_eq!(filtered["Spend in period/A"].decimal(0, "billed_usd"), openai);
    assert_eq!(
        filtered["Spend by provider/A"].column_values("provider"),
        vec!["openai"]
    );

    let at_least_two: Vars = [
        ("database".to_string(), database.clone()),
        ("min_cost".to_string(), vec!["2".to_string()]),
    ]
    .into();
    let filtered = run_dashboard(&client, overview, period, &at_least_two, &mut failures).await;
    let shown: BTreeSet<String> = filtered["Spend by provider/A"]
        .column_values("provider")
        .into_iter()
        .collect();
    assert_eq!(
        shown,
        ["anthropic", "openai"].map(String::from).into(),
        "aws_bedrock's net 1.61 is below the minimum"
    );

    let workspaces = &dashboards
        .iter()
        .find(|(_, d)| d["uid"] == "tokentra-workspaces")
        .unwrap()
        .1;
    let search: Vars = [
        ("database".to_string(), database.clone()),
        ("search".to_string(), vec!["researCH".to_string()]),
    ]
    .into();
    let filtered = run_dashboard(&client, workspaces, period, &search, &mut failures).await;
    let found = &filtered["Workspaces: this period vs the previous one/A"];
    assert_eq!(
        found.column_values("workspace"),
        vec!["Research"],
        "search by workspace name"
    );
    // A quote in the search box must not break the SQL.
    let quote: Vars = [
        ("database".to_string(), database),
        ("search".to_string(), vec!["it's".to_string()]),
    ]
    .into();
    run_dashboard(&client, workspaces, period, &quote, &mut failures).await;
    assert!(
        failures.is_empty(),
        "filtered queries failed:\n{}",
        failures.join("\n\n")
    );
    sim.stop().await;
}

#[test]
fn the_expander_formats_variables_and_macros_like_grafana() {
    let range = TimeRange {
        from: DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z").unwrap().into(),
        to: DateTime::parse_from_rfc3339("2025-01-07T23:59:59Z").unwrap().into(),
    };
    let vars: Vars = [
        ("db".to_string(), vec!["tokentra".to_string()]),
        ("p".to_string(), vec!["openai".to_string(), "it's".to_string()]),
        ("a".to_string(), vec!["x.y".to_string(), "z".to_string()]),
    ]
    .into();
    assert_eq!(
        expand(
            "SELECT 1 FROM $db.t WHERE p IN (${p:singlequote}) AND ${db}",
            range,
            &vars
        )
        .unwrap(),
        "SELECT 1 FROM tokentra.t WHERE p IN ('openai','it\\'s') AND tokentra"
    );
    assert_eq!(
        expand(
            "$__timeFilter(started_at) AND d >= toDate($__fromTime, 'UTC')",
            range,
            &vars
        )
        .unwrap(),
        "started_at >= toDateTime(1735689600) AND started_at <= toDateTime(1736294399) \
         AND d >= toDate(toDateTime(1735689600), 'UTC')"
    );
    assert_eq!(
        expand("$__dateFilter(day)", range, &vars).unwrap(),
        "day >= toDate('2025-01-01') AND day <= toDate('2025-01-07')"
    );
    assert_eq!(expand("${a:regex}", range, &vars).unwrap(), "(x\\.y|z)");
    assert!(expand("$nope", range, &vars).is_err(), "unknown variables fail");
    assert!(
        expand("$__unknownMacro(x)", range, &vars).is_err(),
        "unknown macros fail"
    );
    assert!(
        expand("${p:percentencode}", range, &vars).is_err(),
        "unknown formats fail"
    );
    assert_eq!(expand("cost $ 5", range, &vars).unwrap(), "cost $ 5");
}
