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

/// Every implemented provider: its right key passes, a key of the wrong
/// kind is bad credentials with the fix named, and its expired key is bad
/// credentials saying so.
#[actix_rt::test]
async fn every_provider_tells_the_right_key_from_a_wrong_or_expired_one() {
    use tokentra_sync::simulator as s;
    let sim = support::start_sim(43, 1).await;
    let org = "org-1";
    // (provider, base_url, good key, extra keys, wrong key, what the fix names)
    let cases: Vec<(&str, String, String, String, String, &str)> = vec![
        (
            "openrouter",
            sim.openrouter_base_url(org),
            s::openrouter_api_key(org),
            format!("management_key = \"{}\"\n", s::openrouter_management_key(org)),
            // An inference key where the management key is needed.
            s::openrouter_api_key(org),
            "management key",
        ),
        (
            "litellm",
            sim.litellm_base_url(org),
            s::litellm_api_key(org),
            String::new(),
            "sk-FAKE-TEST-an-openai-key-not-the-proxy".to_string(),
            "master key",
        ),
        (
            "fal",
            sim.fal_base_url(org),
            s::fal_api_key(org),
            String::new(),
            s::fal_api_scope_key(org),
            "ADMIN",
        ),
        (
            "runway",
            sim.runway_base_url(org),
            s::runway_api_key(org),
            String::new(),
            "key_FAKE_TEST_of_another_org_0123".to_string(),
            "developer portal",
        ),
        (
            "piapi",
            sim.piapi_base_url(org),
            s::piapi_api_key(org),
            String::new(),
            "FAKE-TEST-piapi-other-account-0000".to_string(),
            "x-api-key",
        ),
    ];
    for (provider, base, good, extra, wrong, fix) in cases {
        let expired_extra = if extra.is_empty() {
            String::new()
        } else {
            format!(
                "management_key = \"{}\"\n",
                s::expired_api_key(&s::openrouter_management_key(org))
            )
        };
        let expired_key = if extra.is_empty() {
            s::expired_api_key(&good)
        } else {
            good.clone()
        };
        let wrong_extra = if provider == "openrouter" {
            String::new()
        } else {
            extra.clone()
        };
        // One config per account: one organization's key in two accounts
        // of one config is refused (it would count one bill twice).
        let check = |id: &'static str, key: String, more: String| {
            let base = base.clone();
            async move {
                let account = format!(
                    "[[accounts]]\nid = \"{provider}-{id}\"\nprovider = \"{provider}\"\nbase_url = \"{base}\"\n\
                     [accounts.credentials]\napi_key = \"{key}\"\n{more}"
                );
                let config = TestConfig::new(&format!("connection_{provider}_{id}"), &account);
                run(&config, &format!("{provider}-{id}")).await
            }
        };
        let (code, text) = check("good", good.clone(), extra.clone()).await;
        assert_eq!(code, 0, "{provider}: {text}");
        let (code, text) = check("wrong", wrong.clone(), wrong_extra).await;
        assert_eq!(code, 2, "{provider}: {text}");
        assert!(
            text.contains("bad credentials") && text.contains(fix),
            "{provider}: {text}"
        );
        assert!(!text.contains(&wrong), "{provider}: the key leaked: {text}");
        let (code, text) = check("expired", expired_key, expired_extra).await;
        assert_eq!(code, 2, "{provider}: {text}");
        assert!(text.contains("expired"), "{provider}: {text}");
    }
    sim.stop().await;
}
