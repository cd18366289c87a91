//! §3: request and response bodies.

use serde_json::json;

use super::parse_json;
use crate::{
    AccountCreateRequest, AccountCreateResponse, AccountResponse, AccountUpdateRequest,
    AccountUsage, AdminWorker, AdminWorkersResponse, ArtifactUploadResponse, BuildResponse,
    OkResponse, RegisterRequest, RegisterResponse, StatusResponse, Tier, UpdatePerryRequest,
    UpdatePerryResponse, VerifyRequest, VerifyResponse, WorkerSummary,
};

#[test]
fn register_round_trip_and_redaction() {
    let req: RegisterRequest = serde_json::from_str("{}").unwrap();
    assert_eq!(req, RegisterRequest::default());
    let req: RegisterRequest =
        serde_json::from_str(r#"{"github_username":"octo","extra":1}"#).unwrap();
    assert_eq!(req.github_username.as_deref(), Some("octo"));

    let text = r#"{"license_key":"FREE-1A2B-3C4D-5E6F","tier":"free","platforms":["macos"]}"#;
    let resp: RegisterResponse = serde_json::from_str(text).unwrap();
    assert_eq!(resp.tier, Tier::Free);
    assert_eq!(serde_json::to_value(&resp).unwrap(), parse_json(text));
    let debug = format!("{resp:?}");
    assert!(!debug.contains("1A2B"), "{debug}");
    assert!(debug.contains("[redacted]"));
}

#[test]
fn verify_bodies() {
    let req: VerifyRequest =
        serde_json::from_str(r#"{"license_key":"PRO-AAAA-BBBB-CCCC"}"#).unwrap();
    assert_eq!(req.license_key, "PRO-AAAA-BBBB-CCCC");
    assert!(!format!("{req:?}").contains("AAAA"));
    assert!(serde_json::from_str::<VerifyRequest>("{}").is_err());

    assert_eq!(
        serde_json::to_value(VerifyResponse::invalid()).unwrap(),
        json!({"valid":false,"tier":null,"platforms":null})
    );
    let valid = VerifyResponse {
        valid: true,
        tier: Some(Tier::Pro),
        platforms: Some(vec!["macos".into()]),
    };
    assert_eq!(
        serde_json::to_value(valid).unwrap(),
        json!({"valid":true,"tier":"pro","platforms":["macos"]})
    );
}

#[test]
fn account_create_accepts_string_or_number_github_id() {
    for text in [
        r#"{"github_id":123,"github_username":"octo"}"#,
        r#"{"github_id":"123","github_username":"octo"}"#,
        r#"{"github_id":123.0,"github_username":"octo"}"#,
    ] {
        let req: AccountCreateRequest = serde_json::from_str(text).unwrap();
        assert_eq!(req.github_id, "123", "{text}");
        assert_eq!(req.github_username, "octo");
        assert_eq!(req.email, None);
    }
    let req: AccountCreateRequest =
        serde_json::from_str(r#"{"github_id":"9","github_username":"o","email":"o@example.com"}"#)
            .unwrap();
    assert_eq!(req.email.as_deref(), Some("o@example.com"));
    for bad in [
        r#"{"github_username":"octo"}"#,
        r#"{"github_id":1.5,"github_username":"octo"}"#,
        r#"{"github_id":true,"github_username":"octo"}"#,
        r#"{"github_id":null,"github_username":"octo"}"#,
        r#"{"github_id":"1"}"#,
    ] {
        assert!(
            serde_json::from_str::<AccountCreateRequest>(bad).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn account_create_response_redacts_token() {
    let resp = AccountCreateResponse {
        id: "a1".into(),
        api_token: "tok-secret-value".into(),
        github_username: "octo".into(),
        tier: Tier::Free,
        created: true,
    };
    let debug = format!("{resp:?}");
    assert!(!debug.contains("tok-secret-value"), "{debug}");
    assert_eq!(
        serde_json::to_value(&resp).unwrap(),
        json!({"id":"a1","api_token":"tok-secret-value","github_username":"octo","tier":"free","created":true})
    );
}

#[test]
fn account_update_validates_tier_and_account_id() {
    let req: AccountUpdateRequest =
        serde_json::from_str(r#"{"account_id":"a1","tier":"pro","has_payment_method":true}"#)
            .unwrap();
    assert_eq!(req.tier, Some(Tier::Pro));
    assert_eq!(req.has_payment_method, Some(true));
    assert_eq!(req.polar_customer_id, None);
    assert!(serde_json::from_str::<AccountUpdateRequest>(r#"{"tier":"pro"}"#).is_err());
    assert!(
        serde_json::from_str::<AccountUpdateRequest>(r#"{"account_id":"a1","tier":"gold"}"#)
            .is_err()
    );
}

#[test]
fn account_response_shape() {
    let resp = AccountResponse {
        id: "a1".into(),
        github_username: "octo".into(),
        email: None,
        tier: Tier::Pro,
        has_payment_method: false,
        usage: AccountUsage {
            publishes: 3,
            publish_limit: 50,
            deep_verifies: 0,
            verify_limit: 20,
            period: "2026-04".into(),
        },
    };
    assert_eq!(
        serde_json::to_value(&resp).unwrap(),
        json!({"id":"a1","github_username":"octo","email":null,"tier":"pro","has_payment_method":false,
               "usage":{"publishes":3,"publish_limit":50,"deep_verifies":0,"verify_limit":20,"period":"2026-04"}})
    );
}

#[test]
fn build_and_admin_bodies() {
    let text = r#"{"job_id":"j1","ws_url":"/ws","position":1}"#;
    let resp: BuildResponse = serde_json::from_str(text).unwrap();
    assert_eq!(serde_json::to_value(&resp).unwrap(), parse_json(text));

    let text = r#"{"token":"d1","download_url":"https://hub.example/api/v1/dl/d1","size":42}"#;
    let resp: ArtifactUploadResponse = serde_json::from_str(text).unwrap();
    assert_eq!(serde_json::to_value(&resp).unwrap(), parse_json(text));

    let req: UpdatePerryRequest = serde_json::from_str("{}").unwrap();
    assert_eq!(req.expected_version, None);
    let resp = UpdatePerryResponse {
        ok: true,
        workers_notified: 1,
        expected_version: "0.5.1182".into(),
        workers: vec![WorkerSummary {
            name: "linux-1".into(),
            perry_version: "unknown".into(),
            busy: false,
        }],
    };
    assert_eq!(
        serde_json::to_value(&resp).unwrap(),
        json!({"ok":true,"workers_notified":1,"expected_version":"0.5.1182",
               "workers":[{"name":"linux-1","perry_version":"unknown","busy":false}]})
    );
    let resp = AdminWorkersResponse {
        expected_version: String::new(),
        workers: vec![AdminWorker {
            name: "linux-1".into(),
            perry_version: "0.5.1182".into(),
            capabilities: ",linux,android,".into(),
            busy: true,
            slots: 2,
            jobs: vec!["j1".into()],
            connected_ms: 5,
            last_seen_ms: 6,
            draining: true,
        }],
        drained: vec!["linux-1".into()],
    };
    assert_eq!(
        serde_json::to_value(&resp).unwrap(),
        json!({"expected_version":"","drained":["linux-1"],"workers":[{"name":"linux-1","perry_version":"0.5.1182","capabilities":",linux,android,","busy":true,
            "slots":2,"jobs":["j1"],"connected_ms":5,"last_seen_ms":6,"draining":true}]})
    );
    assert_eq!(
        serde_json::to_value(OkResponse { ok: true }).unwrap(),
        json!({"ok":true})
    );
    let status = StatusResponse {
        status: "ok".into(),
        queue_length: 0,
        connected_workers: 2,
        perry_version: "0.1.0".into(),
        expected_perry_version: String::new(),
        supported_targets: vec!["linux".into()],
    };
    assert_eq!(
        serde_json::to_value(&status).unwrap(),
        json!({"status":"ok","queue_length":0,"connected_workers":2,"perry_version":"0.1.0",
               "expected_perry_version":"","supported_targets":["linux"]})
    );
}
