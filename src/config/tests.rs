use super::*;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn load(text: &str, vars: &[(&str, &str)]) -> Result<ValidatedConfig, ConfigError> {
    load_str(text, Path::new("test.toml"), &env(vars))
}

fn problems(text: &str, vars: &[(&str, &str)]) -> Vec<String> {
    match load(text, vars) {
        Err(ConfigError::Invalid { problems }) => problems,
        other => panic!("expected invalid config, got {other:?}"),
    }
}

const OPENAI: &str = r#"
[[accounts]]
id = "acme-openai"
provider = "openai"
[accounts.credentials]
api_key = "${OPENAI_ADMIN_KEY}"
"#;

#[test]
fn the_example_config_is_valid() {
    let text = include_str!("../../config/tokentra-sync.example.toml");
    let config = load(
        text,
        &[
            ("OPENAI_ADMIN_KEY", "sk-admin-FAKE-1"),
            ("ANTHROPIC_ADMIN_KEY", "sk-ant-admin01-FAKE-1"),
            ("CLICKHOUSE_PASSWORD", ""),
        ],
    )
    .unwrap();
    assert!(!config.accounts.is_empty());
}

#[test]
fn defaults_come_from_one_place() {
    let config = load(OPENAI, &[("OPENAI_ADMIN_KEY", "sk-admin-FAKE-1")]).unwrap();
    assert_eq!(config.clickhouse.database, "tokentra");
    assert_eq!(config.admin.listen.to_string(), "127.0.0.1:9464");
    let account = &config.accounts[0];
    assert_eq!(account.interval, Duration::from_secs(300));
    assert_eq!(account.lookback, Duration::from_secs(2 * 86_400));
    assert_eq!(account.backfill_days, 30);
    assert_eq!(account.base_url, "https://api.openai.com/v1");
    assert_eq!(account.credential("api_key").unwrap().expose(), "sk-admin-FAKE-1");
}

#[test]
fn a_missing_environment_variable_names_the_field() {
    let p = problems(OPENAI, &[]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].contains("accounts[0].credentials.api_key") && p[0].contains("OPENAI_ADMIN_KEY"),
        "{p:?}"
    );
}

#[test]
fn env_overrides_reach_top_level_sections() {
    let config = load(
        OPENAI,
        &[
            ("OPENAI_ADMIN_KEY", "sk-admin-FAKE-1"),
            ("TOKENTRA__CLICKHOUSE__URL", "http://127.0.0.1:18123"),
            ("TOKENTRA__CLICKHOUSE__PASSWORD", "12345"),
            ("TOKENTRA__WRITER__MAX_BATCH_ROWS", "1000"),
            ("TOKENTRA__STATE_DIR", "/tmp/x"),
        ],
    )
    .unwrap();
    assert_eq!(config.clickhouse.url, "http://127.0.0.1:18123");
    assert_eq!(config.clickhouse.password.unwrap().expose(), "12345");
    assert_eq!(config.writer.max_batch_rows, 1000);
    assert_eq!(config.state_dir, PathBuf::from("/tmp/x"));
    let p = problems(OPENAI, &[("OPENAI_ADMIN_KEY", "k-FAKE"), ("TOKENTRA__NOPE__X", "1")]);
    assert!(p[0].contains("TOKENTRA__NOPE__X"), "{p:?}");
}

#[test]
fn unknown_keys_are_rejected_with_the_allowed_list() {
    let p = problems(
        r#"
[[accounts]]
id = "a"
provider = "openai"
intervall = "5m"
[accounts.credentials]
api_key = "sk-admin-FAKE"
"#,
        &[],
    );
    assert!(
        p[0].contains("accounts[0] (id 'a')") && p[0].contains("'intervall'") && p[0].contains("interval"),
        "{p:?}"
    );
    let p = problems("[clickhouse]\nurll = \"x\"\n", &[]);
    assert!(p[0].contains("urll"), "{p:?}");
}

#[test]
fn wrong_credentials_for_the_provider_are_named() {
    let p = problems(
        r#"
[[accounts]]
id = "a"
provider = "anthropic"
[accounts.credentials]
access_key_id = "AKIAFAKE"
"#,
        &[],
    );
    assert!(
        p.iter()
            .any(|m| m.contains("credentials.access_key_id is not a anthropic credential")),
        "{p:?}"
    );
    assert!(p.iter().any(|m| m.contains("credentials.api_key is missing")), "{p:?}");
}

#[test]
fn the_same_credential_twice_is_rejected() {
    let text = r#"
[[accounts]]
id = "a"
provider = "openai"
[accounts.credentials]
api_key = "sk-admin-FAKE-same"
[[accounts]]
id = "b"
provider = "openai"
[accounts.credentials]
api_key = "sk-admin-FAKE-same"
"#;
    let p = problems(text, &[]);
    assert!(
        p.iter().any(|m| m.contains("'a' and 'b'") && m.contains("twice")),
        "{p:?}"
    );
    assert!(
        p.iter().all(|m| !m.contains("sk-admin-FAKE-same")),
        "a secret leaked into {p:?}"
    );
}

#[test]
fn bad_values_get_a_fix() {
    let p = problems(
        r#"
[admin]
listen = "everywhere"
[[accounts]]
id = "Bad Id"
provider = "openai"
interval = "soon"
lookback = "1h"
backfill_days = 0
[accounts.credentials]
api_key = "sk-admin-FAKE"
"#,
        &[],
    );
    let all = p.join("\n");
    for needle in [
        "admin.listen",
        "Bad Id",
        "interval: 'soon'",
        "lookback 1h is shorter",
        "backfill_days",
    ] {
        assert!(all.contains(needle), "missing {needle} in {all}");
    }
}

#[test]
fn interpolation_handles_escapes_and_literals() {
    let vars = env(&[("A", "x")]);
    assert_eq!(expand("${A}-$$-$B-${", &vars).unwrap(), "x-$-$B-${");
    assert_eq!(expand("${MISSING}", &vars).unwrap_err(), "MISSING");
}

#[test]
fn every_number_is_bounded_at_load() {
    let text = format!(
        "[sync]\ndeep_resync_days = 4000000000\nbackfill_chunk_days = 0\nmax_response_mb = 0\nmax_concurrent_syncs = 0\nmax_concurrent_store = 0\n\
         endpoint_deadline = \"100000d\"\n[writer]\nmax_batch_rows = 0\n{OPENAI}"
    );
    let p = problems(&text, &[("OPENAI_ADMIN_KEY", "sk-admin-FAKE-1")]);
    for field in [
        "sync.deep_resync_days",
        "sync.backfill_chunk_days",
        "sync.max_response_mb",
        "sync.max_concurrent_syncs",
        "sync.max_concurrent_store",
        "sync.endpoint_deadline",
        "writer.max_batch_rows",
    ] {
        assert!(p.iter().any(|m| m.starts_with(field)), "{field} in {p:?}");
    }
    let interval = OPENAI.replace("provider = \"openai\"", "provider = \"openai\"\ninterval = \"400d\"");
    let p = problems(&interval, &[("OPENAI_ADMIN_KEY", "sk-admin-FAKE-1")]);
    assert!(p[0].contains("interval") && p[0].contains("maximum"), "{p:?}");
}

#[test]
fn plain_http_is_refused_off_loopback_unless_opted_in() {
    let with_url = |url: &str, extra: &str| {
        OPENAI.replace(
            "provider = \"openai\"",
            &format!("provider = \"openai\"\nbase_url = \"{url}\"\n{extra}"),
        )
    };
    let vars = [("OPENAI_ADMIN_KEY", "sk-admin-FAKE-1")];
    let p = problems(&with_url("http://proxy.internal/v1", ""), &vars);
    assert!(
        p[0].contains("plain http") && p[0].contains("allow_insecure_http"),
        "{p:?}"
    );
    assert!(load(
        &with_url("http://proxy.internal/v1", "allow_insecure_http = true"),
        &vars
    )
    .is_ok());
    assert!(load(&with_url("http://127.0.0.1:8787/v1", ""), &vars).is_ok());
    assert!(load(&with_url("http://localhost:8787/v1", ""), &vars).is_ok());
    assert!(load(&with_url("https://proxy.internal/v1", ""), &vars).is_ok());
}

#[test]
fn the_provider_checks_its_own_key_type_at_load() {
    let p = problems(OPENAI, &[("OPENAI_ADMIN_KEY", "sk-proj-FAKE-TEST-0123456789abcdef")]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].contains("accounts[0] (id 'acme-openai')") && p[0].contains("Admin key"),
        "{p:?}"
    );
    assert!(!p[0].contains("sk-proj-FAKE-TEST-0123456789abcdef"), "{p:?}");
}

#[test]
fn an_unwritable_state_dir_is_named_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let text = format!("state_dir = \"{}\"\n{OPENAI}", file.join("sub").display());
    let config = load(&text, &[("OPENAI_ADMIN_KEY", "sk-admin-FAKE-1")]).unwrap();
    let err = config.check_state_dir().unwrap_err().to_string();
    assert!(err.contains("state_dir") && err.contains("cannot be created"), "{err}");
    let ok = format!("state_dir = \"{}\"\n{OPENAI}", dir.path().join("state").display());
    load(&ok, &[("OPENAI_ADMIN_KEY", "sk-admin-FAKE-1")])
        .unwrap()
        .check_state_dir()
        .unwrap();
}
