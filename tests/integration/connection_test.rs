//! `test-connection` against the simulator: the right key, a key of the
//! wrong type, an expired key and an unreachable host each get their own
//! answer and exit code, and no key is ever printed.

use crate::support::{self, TestConfig};

/// Runs `test-connection` for `account`; returns (exit code, stdout+stderr).
async fn run(config: &TestConfig, account: &str) -> (i32, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokentra-sync"))
        .args(["test-connection", "-c"])
        .arg(config.write())
        .args(["--account", account])
        .env("TOKENTRA_LOG", "error")
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn account(id: &str, provider: &str, base_url: &str, key: &str) -> String {
    format!(
        "[[accounts]]\nid = \"{id}\"\nprovider = \"{provider}\"\nbase_url = \"{base_url}\"\n\
         [accounts.credentials]\napi_key = \"{key}\"\n"
    )
}

#[actix_rt::test]
async fn each_kind_of_credential_problem_gets_its_own_answer_and_exit_code() {
    use tokentra_sync::simulator::{anthropic_api_key, expired_api_key, openai_api_key};
    let sim = support::start_sim(41, 1).await;
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let openai = sim.openai_base_url("org-1");
    let anthropic = sim.anthropic_base_url("org-1");
    let workspace_key = "sk-ant-api03-FAKE-TEST-workspace-key-0000";
    let accounts = [
        account("openai-good", "openai", &openai, &openai_api_key("org-1")),
        account(
            "openai-expired",
            "openai",
            &openai,
            &expired_api_key(&openai_api_key("org-1")),
        ),
        account("anthropic-good", "anthropic", &anthropic, &anthropic_api_key("org-1")),
        account("anthropic-workspace", "anthropic", &anthropic, workspace_key),
        account(
            "anthropic-expired",
            "anthropic",
            &anthropic,
            &expired_api_key(&anthropic_api_key("org-1")),
        ),
        account(
            "openai-unreachable",
            "openai",
            &format!("http://127.0.0.1:{closed_port}/v1"),
            "sk-admin-FAKE-TEST-unreachable-0000",
        ),
    ]
    .concat();
    let config = TestConfig::new("connection_test", &accounts);

    let (code, text) = run(&config, "openai-good").await;
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("ok in") && text.contains("usage (completions)") && text.contains("cost (costs)"),
        "{text}"
    );
    let (code, text) = run(&config, "anthropic-good").await;
    assert_eq!(code, 0, "{text}");

    let (code, text) = run(&config, "openai-expired").await;
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("bad credentials") && text.contains("expired"), "{text}");
    let (code, text) = run(&config, "anthropic-expired").await;
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("expired or was revoked"), "{text}");

    let (code, text) = run(&config, "anthropic-workspace").await;
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("standard (workspace) API key") && text.contains("sk-ant-admin01"),
        "{text}"
    );
    assert!(!text.contains(workspace_key), "the key leaked: {text}");

    let (code, text) = run(&config, "openai-unreachable").await;
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains(&format!("cannot reach 127.0.0.1:{closed_port}")),
        "{text}"
    );

    for id in ["openai-good", "openai-expired", "anthropic-good", "anthropic-expired"] {
        let (_, text) = run(&config, id).await;
        assert!(!text.contains("FAKE-sim") && !text.contains("EXPIRED\""), "{text}");
    }
    sim.stop().await;
}

#[actix_rt::test]
async fn a_project_key_is_refused_before_any_request() {
    let config = TestConfig::new(
        "connection_test_project",
        &account(
            "openai-project",
            "openai",
            "https://api.openai.com/v1",
            "sk-proj-FAKE-TEST-0123456789abcdefghij",
        ),
    );
    let (code, text) = run(&config, "openai-project").await;
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("project keys") && text.contains("Admin key"), "{text}");
    assert!(!text.contains("sk-proj-FAKE-TEST-0123456789abcdefghij"), "{text}");
}
