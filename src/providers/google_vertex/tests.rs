//! The typed config (wrong key types named with the fix, the table checked)
//! and the retry classification of Google's answers.

use std::collections::BTreeMap;

use super::auth::tests::test_key_pem;
use super::*;
use crate::config::secret::Secret;
use crate::providers::AccountView;

const TABLE: &str = "acme-billing.billing_export.gcp_billing_export_v1_012345_6789AB_CDEF01";

fn key_json(pem: &str) -> String {
    serde_json::json!({
        "type": "service_account", "project_id": "acme-ml", "private_key_id": "k1", "private_key": pem,
        "client_email": "sync@acme-ml.iam.gserviceaccount.com", "token_uri": "https://oauth2.googleapis.com/token",
    })
    .to_string()
}

fn read(creds: &[(&str, &str)], settings: &[(&str, &str)]) -> Result<VertexConfig, Vec<String>> {
    let creds: BTreeMap<String, Secret> = creds.iter().map(|(k, v)| (k.to_string(), Secret::new(*v))).collect();
    let settings: BTreeMap<String, String> = settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    VertexConfig::read(AccountView {
        id: "vertex",
        base_url: "https://bigquery.googleapis.com/bigquery/v2",
        credentials: &creds,
        settings: &settings,
    })
}

#[test]
fn vertex_config_reads_a_pasted_key_or_a_file_with_defaults() {
    let pem = test_key_pem();
    let json = key_json(&pem);
    let c = read(&[("service_account_json", &json)], &[("billing_table", TABLE)]).unwrap();
    assert_eq!(c.query_project, "acme-ml");
    assert_eq!(
        c.billing_table.quoted(),
        "`acme-billing`.`billing_export`.`gcp_billing_export_v1_012345_6789AB_CDEF01`"
    );
    assert_eq!(c.services, ["Vertex AI", "Gemini API"]);
    assert_eq!(c.monitoring_url.as_deref(), Some("https://monitoring.googleapis.com"));
    assert!(!format!("{c:?}").contains("PRIVATE KEY"), "the key never prints");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.json");
    std::fs::write(&path, &json).unwrap();
    let c = read(
        &[("service_account_file", path.to_str().unwrap())],
        &[
            ("billing_table", TABLE),
            ("monitoring", "off"),
            ("query_project", "acme-billing"),
        ],
    )
    .unwrap();
    assert_eq!(
        (c.key_field, c.monitoring_url, c.query_project.as_str()),
        ("credentials.service_account_file", None, "acme-billing")
    );
    let missing = read(
        &[("service_account_file", "/nonexistent/key.json")],
        &[("billing_table", TABLE)],
    )
    .unwrap_err();
    assert!(
        missing[0].contains("/nonexistent/key.json") && missing[0].contains("cannot be read"),
        "{missing:?}"
    );
}

#[test]
fn vertex_wrong_key_types_are_named_with_the_fix_and_never_echoed() {
    let cases = [
        ("AIzaSyFAKE-TEST-0123456789abcdefghijklmno", "API key"),
        ("ya29.FAKE-TEST-token", "access token"),
        (
            r#"{"installed": {"client_id": "x.apps.googleusercontent.com", "client_secret": "GOCSPX-FAKE-TEST"}}"#,
            "OAuth client",
        ),
        (
            r#"{"type": "authorized_user", "refresh_token": "1//FAKE-TEST"}"#,
            "authorized_user",
        ),
        (
            r#"{"type": "external_account", "audience": "//iam"}"#,
            "external_account",
        ),
        ("not json", "not valid JSON"),
    ];
    for (value, what) in cases {
        let err = read(&[("service_account_json", value)], &[("billing_table", TABLE)])
            .unwrap_err()
            .join("; ");
        assert!(
            err.contains(what) && err.contains("Create new key > JSON"),
            "{what}: {err}"
        );
        assert!(!err.contains("FAKE-TEST"), "{err}");
    }
    // A service account JSON with a broken key.
    let broken = key_json("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
    let err = read(&[("service_account_json", &broken)], &[("billing_table", TABLE)])
        .unwrap_err()
        .join("; ");
    assert!(err.contains("private_key") && err.contains("not an RSA key"), "{err}");
}

#[test]
fn vertex_table_and_settings_are_checked_so_nothing_can_be_spliced() {
    let pem = test_key_pem();
    let json = key_json(&pem);
    for bad in [
        "acme-billing.billing_export",
        "acme-billing.billing`; DROP TABLE x; --.t",
        "Acme.billing.t",
        "acme-billing.billing export.t",
        "acme-billing.billing_export.t`x",
    ] {
        let err = read(&[("service_account_json", &json)], &[("billing_table", bad)])
            .unwrap_err()
            .join("; ");
        assert!(err.contains("billing_table"), "{bad}: {err}");
    }
    let err = read(&[("service_account_json", &json)], &[]).unwrap_err().join("; ");
    assert!(err.contains("billing_table is missing"), "{err}");
    let err = read(
        &[("service_account_json", &json)],
        &[
            ("billing_table", TABLE),
            ("location", "US'"),
            ("monitoring_url", "http://metadata.google.internal"),
        ],
    )
    .unwrap_err()
    .join("; ");
    assert!(err.contains("location") && err.contains("monitoring_url"), "{err}");
    let plain = json.replace("https://oauth2.googleapis.com/token", "http://oauth2.example.com/token");
    let err = read(&[("service_account_json", &plain)], &[("billing_table", TABLE)])
        .unwrap_err()
        .join("; ");
    assert!(err.contains("token_uri"), "{err}");
}

#[test]
fn vertex_bigquery_403_rate_limits_are_retried_but_access_denied_is_auth() {
    let none = HeaderMap::new();
    let c = GoogleClassifier;
    let rate = r#"{"error":{"code":403,"errors":[{"reason":"rateLimitExceeded"}],"status":"PERMISSION_DENIED"}}"#;
    assert!(matches!(
        c.classify(StatusCode::FORBIDDEN, &none, rate),
        Verdict::Retry {
            kind: FailureKind::Throttled,
            ..
        }
    ));
    let denied = r#"{"error":{"code":403,"errors":[{"reason":"accessDenied"}],"status":"PERMISSION_DENIED"}}"#;
    assert_eq!(
        c.classify(StatusCode::FORBIDDEN, &none, denied),
        Verdict::Fail(FailureKind::Auth)
    );
    assert!(matches!(
        c.classify(StatusCode::SERVICE_UNAVAILABLE, &none, ""),
        Verdict::Retry { .. }
    ));
}

#[test]
fn vertex_fuzz_parse_never_panics_on_odd_input() {
    let odd: [&[u8]; 8] = [
        b"",
        b"\x00",
        b"\x00{\"jobReference\":{\"projectId\":\"p\",\"jobId\":\"j\"},\"jobComplete\":true,\"schema\":{\"fields\":[{\"name\":\"day\"}]},\"rows\":[{\"f\":[{\"v\":\"9223372036854775807\"}]}]}",
        b"\x00{\"jobReference\":{\"projectId\":\"p\",\"jobId\":\"j\"},\"jobComplete\":true,\"schema\":{\"fields\":[]},\"rows\":[{\"f\":[]}]}",
        b"\x01{\"timeSeries\":[{\"points\":[{\"interval\":{\"endTime\":\"0000-01-01T00:00:00Z\"},\"value\":{\"doubleValue\":1e300}}]}]}",
        b"\x02{\"access_token\":\"x\",\"expires_in\":18446744073709551615}",
        b"\x03{\"type\":\"service_account\",\"private_key\":\"-----BEGIN PRIVATE KEY-----\"}",
        b"\x07\xff\xfe",
    ];
    for data in odd {
        fuzz_parse(data);
    }
}
