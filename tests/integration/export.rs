//! `export` against the dashboards: for every view, the CSV the binary
//! writes equals, cell for cell, what the dashboard's own panel SQL (read
//! from `dashboards/*.json` and expanded by the dashboards test's
//! independent expander) returns from ClickHouse; `--provider` filters,
//! `--sort` orders by a column and refuses one the view does not have.

use std::str::FromStr;

use chrono::{Duration, Utc};
use rust_decimal::Decimal;

use crate::dashboards::{expand, load_dashboards, panel_queries, run_select, Table, TimeRange, Vars};
use crate::support::{self, TestConfig};

/// (view, dashboard uid, panel title): the pairs the export documents.
const VIEWS: [(&str, &str, &str); 4] = [
    ("overview", "tokentra-overview", "Spend by account"),
    ("models", "tokentra-models", "Cost per model"),
    ("keys", "tokentra-api-keys", "Cost, tokens and requests per API key"),
    (
        "workspaces",
        "tokentra-workspaces",
        "Workspaces: this period vs the previous one",
    ),
];

/// RFC 4180: quoted fields may hold commas, quotes (doubled) and line breaks.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    assert!(text.is_empty() || text.ends_with("\r\n"), "records end with CRLF");
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {
                chars.next();
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(field.is_empty() && row.is_empty(), "a record without its CRLF");
    rows
}

async fn export(config: &TestConfig, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_tokentra-sync"))
        .args(["export", "-c"])
        .arg(config.write())
        .args(args)
        .env("TOKENTRA_LOG", "warn")
        .output()
        .await
        .expect("the binary runs")
}

/// The dashboard table as the CSV renders it (NULL is an empty field).
fn as_csv_rows(table: &Table) -> Vec<Vec<String>> {
    let mut rows = vec![table.columns.clone()];
    rows.extend(table.rows.iter().map(|r| {
        r.iter()
            .map(|v| if v == "\\N" { String::new() } else { v.clone() })
            .collect()
    }));
    rows
}

#[actix_rt::test]
async fn export_equals_the_dashboard_queries_for_every_view() {
    let sim = support::start_sim(23, 1).await;
    let mut accounts = support::sim_accounts(&sim, &["org-1"], &["openai", "anthropic"]);
    // Anthropic cost allocated to keys, so the keys view has cost on keys.
    accounts = accounts.replace(
        "provider = \"anthropic\"\n",
        "provider = \"anthropic\"\nallocate_cost = true\n",
    );
    let config = TestConfig::new("export", &accounts);
    let client = config.client();
    let today = Utc::now().date_naive();
    let (since, until) = (today - Duration::days(6), today);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokentra-sync"))
        .args(["sync", "-c"])
        .arg(config.write())
        .args([
            "--since",
            &(since - Duration::days(7)).to_string(),
            "--until",
            &until.to_string(),
        ])
        .env("TOKENTRA_LOG", "warn")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let range = TimeRange {
        from: since.and_hms_opt(0, 0, 0).unwrap().and_utc(),
        to: until.and_hms_opt(0, 0, 0).unwrap().and_utc() - Duration::seconds(1),
    };
    let mut vars: Vars = [
        ("database", vec![client.database().to_string()]),
        ("provider", vec!["anthropic".to_string(), "openai".to_string()]),
        ("search", vec![String::new()]),
        ("min_cost", vec![String::new()]),
        ("max_cost", vec![String::new()]),
        ("period", vec!["day".to_string()]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let dashboards = load_dashboards();
    let panel_sql = |uid: &str, title: &str| -> String {
        let (_, dashboard) = dashboards
            .iter()
            .find(|(_, d)| d["uid"] == uid)
            .unwrap_or_else(|| panic!("no dashboard {uid}"));
        panel_queries(dashboard)
            .into_iter()
            .find(|q| q.panel == title)
            .unwrap_or_else(|| panic!("{uid} has no panel {title}"))
            .text
    };
    let window = [
        "--since".to_string(),
        since.to_string(),
        "--until".to_string(),
        until.to_string(),
    ];
    let window: Vec<&str> = window.iter().map(String::as_str).collect();

    let mut net_totals = Vec::new();
    for (view, uid, title) in VIEWS {
        let file = config.dir.path().join(format!("{view}.csv"));
        let mut args = vec!["--view", view];
        args.extend(&window);
        args.extend(["--output", file.to_str().unwrap()]);
        let out = export(&config, &args).await;
        assert!(out.status.success(), "{view}: {}", String::from_utf8_lossy(&out.stderr));
        let csv = parse_csv(&std::fs::read_to_string(&file).unwrap());
        let sql = expand(&panel_sql(uid, title), range, &vars).unwrap();
        let dashboard = run_select(&client, &sql).await.unwrap();
        assert!(dashboard.rows.len() >= 2, "{view}: the dashboard shows rows");
        assert_eq!(csv, as_csv_rows(&dashboard), "{view}: the CSV is the dashboard's table");
        // Money is exact decimal text, never a float's rendering.
        let money = if view == "workspaces" {
            "current_net_usd"
        } else {
            "net_usd"
        };
        let col = csv[0].iter().position(|c| c == money).unwrap();
        let total: Decimal = csv[1..].iter().map(|r| Decimal::from_str(&r[col]).unwrap()).sum();
        assert!(csv[1..].iter().all(|r| !r[col].contains('e')), "{view}: {money}");
        net_totals.push((view, total));
    }
    // The same money seen through every view (models shows only rows with a model).
    let overview = net_totals[0].1;
    assert!(overview > Decimal::ZERO);
    for (view, total) in &net_totals {
        if *view != "models" {
            assert_eq!(*total, overview, "{view} total");
        }
    }

    // --provider and --sort.
    vars.insert("provider".into(), vec!["anthropic".into()]);
    let mut args = vec!["--view", "keys", "--provider", "anthropic", "--sort", "net_usd:desc"];
    args.extend(&window);
    let out = export(&config, &args).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = parse_csv(&String::from_utf8(out.stdout).unwrap());
    let sql = expand(
        &panel_sql("tokentra-api-keys", "Cost, tokens and requests per API key"),
        range,
        &vars,
    )
    .unwrap();
    let mut want = as_csv_rows(&run_select(&client, &sql).await.unwrap());
    let col = want[0].iter().position(|c| c == "net_usd").unwrap();
    want[1..].sort_by(|a, b| {
        Decimal::from_str(&b[col])
            .unwrap()
            .cmp(&Decimal::from_str(&a[col]).unwrap())
    });
    assert_eq!(csv, want);
    assert!(csv[1..].iter().all(|r| r[0] == "anthropic"));
    assert!(
        csv[1..]
            .iter()
            .filter(|r| !r[3].is_empty() && Decimal::from_str(&r[col]).unwrap() > Decimal::ZERO)
            .count()
            >= 2,
        "allocated cost shows on Anthropic keys: {csv:?}"
    );

    let mut args = vec!["--view", "models", "--sort", "cost"];
    args.extend(&window);
    let out = export(&config, &args).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no column 'cost'") && stderr.contains("net_usd"),
        "names the columns: {stderr}"
    );
    let out = export(
        &config,
        &["--view", "keys", "--since", "2026-13-01", "--until", "2026-01-02"],
    )
    .await;
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("YYYY-MM-DD"));
    sim.stop().await;
}
