//! Log output of the real binary: text without ANSI colour when stderr is not
//! a terminal, JSON lines with `--log-format json` (and the `--log-json`
//! alias), and the filter from `--log`/TOKENTRA_LOG, else RUST_LOG.

use crate::support::TestConfig;

const ACCOUNT: &str = r#"
[[accounts]]
id = "logs-openai"
provider = "openai"
base_url = "http://127.0.0.1:9/v1"
[accounts.credentials]
api_key = "sk-admin-FAKE-logs"
"#;

/// Runs a one-shot sync of an account the config does not have: the command
/// fails at once, and main logs "command failed" at error level (stderr is a
/// pipe here, never a terminal).
async fn failing_command(args: &[&str], env: &[(&str, &str)]) -> String {
    let config = TestConfig::new("logs", ACCOUNT);
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokentra-sync"));
    command
        .args(["sync", "-c"])
        .arg(config.write())
        .args(["--account", "missing"])
        .args(args)
        .env_remove("TOKENTRA_LOG")
        .env_remove("TOKENTRA_LOG_FORMAT")
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR");
    for (key, value) in env {
        command.env(key, value);
    }
    let out = command.output().await.expect("the binary runs");
    assert_eq!(out.status.code(), Some(1));
    String::from_utf8(out.stderr).expect("stderr is UTF-8")
}

fn log_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| !l.starts_with("error: ")).collect()
}

#[actix_rt::test]
async fn text_logs_have_no_colour_on_a_pipe_and_json_logs_parse() {
    let text = failing_command(&[], &[]).await;
    let lines = log_lines(&text);
    assert_eq!(lines.len(), 1, "{text}");
    assert!(
        lines[0].contains("ERROR") && lines[0].contains("command failed"),
        "{text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "no ANSI escapes when stderr is not a terminal: {text:?}"
    );

    for args in [&["--log-format", "json"][..], &["--log-json"][..]] {
        let json = failing_command(args, &[]).await;
        let lines = log_lines(&json);
        assert_eq!(lines.len(), 1, "{json}");
        let line: serde_json::Value = serde_json::from_str(lines[0]).expect("one JSON object a line");
        assert_eq!(line["level"], "ERROR");
        assert_eq!(line["fields"]["message"], "command failed");
        assert!(line["fields"]["error"]
            .as_str()
            .unwrap()
            .contains("no account 'missing'"));
    }
    let json = failing_command(&[], &[("TOKENTRA_LOG_FORMAT", "json")]).await;
    assert!(log_lines(&json)[0].starts_with('{'), "{json}");
}

#[actix_rt::test]
async fn the_filter_comes_from_log_then_rust_log() {
    // RUST_LOG alone is honoured.
    assert!(log_lines(&failing_command(&[], &[("RUST_LOG", "off")]).await).is_empty());
    // TOKENTRA_LOG and --log win over RUST_LOG.
    let stderr = failing_command(&[], &[("RUST_LOG", "off"), ("TOKENTRA_LOG", "error")]).await;
    assert_eq!(log_lines(&stderr).len(), 1, "{stderr}");
    let stderr = failing_command(&["--log", "error"], &[("RUST_LOG", "off")]).await;
    assert_eq!(log_lines(&stderr).len(), 1, "{stderr}");
    assert!(log_lines(&failing_command(&["--log", "off"], &[("RUST_LOG", "error")]).await).is_empty());
    // The plain error message is printed whatever the filter.
    let stderr = failing_command(&["--log", "off"], &[]).await;
    assert!(stderr.contains("error: no account 'missing'"), "{stderr}");
}
