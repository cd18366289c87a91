//! Parsing the fragments together, flattened the way a service flattens them.

use clap::Parser;

use super::{hub::DEV_CREDENTIALS_KEY, *};

#[derive(Parser, Debug)]
struct TestConfig {
    #[command(flatten)]
    db: DbConfig,
    #[command(flatten)]
    amqp: AmqpConfig,
    #[command(flatten)]
    blob: BlobConfig,
    #[command(flatten)]
    hub: HubConfig,
}

fn parse(args: &[&str]) -> TestConfig {
    let mut all = vec!["test"];
    all.extend_from_slice(args);
    match TestConfig::try_parse_from(all) {
        Ok(c) => c,
        Err(e) => panic!("parse failed: {e}"),
    }
}

#[test]
fn empty_secrets_fail_outside_dev_mode_naming_the_variable() {
    let c = parse(&[
        "--public-url",
        "https://hub.example",
        "--credentials-key",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    ]);
    let err = c.hub.validate_worker_secret().unwrap_err();
    assert_eq!(err.variable, "PERRY_HUB_WORKER_SECRET");
    assert!(err
        .to_string()
        .contains("required outside development mode"));
    let err = c.hub.validate_admin_secret().unwrap_err();
    assert_eq!(err.variable, "PERRY_HUB_ADMIN_SECRET");
}

#[test]
fn dev_mode_allows_empty_secrets_and_defaults() {
    let c = parse(&["--dev-mode", "true"]);
    c.hub.validate().unwrap();
    c.hub.validate_worker_secret().unwrap();
    assert_eq!(c.hub.public_url(), DEFAULT_PUBLIC_URL);
    assert_eq!(c.hub.credentials_key().unwrap(), DEV_CREDENTIALS_KEY);
}

#[test]
fn short_secret_and_bad_key_are_rejected() {
    let c = parse(&[
        "--public-url",
        "https://h",
        "--worker-secret",
        "short",
        "--credentials-key",
        "bm90LTMyLWJ5dGVz",
    ]);
    assert!(c
        .hub
        .validate_worker_secret()
        .unwrap_err()
        .reason
        .contains("16"));
    let err = c.hub.validate().unwrap_err();
    assert_eq!(err.variable, "PERRY_HUB_CREDENTIALS_KEY");
    assert!(err.reason.contains("32 bytes"));
}

#[test]
fn public_url_is_required_and_checked() {
    let c = parse(&[
        "--credentials-key",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    ]);
    assert_eq!(
        c.hub.validate().unwrap_err().variable,
        "PERRY_HUB_PUBLIC_URL"
    );
    let c = parse(&[
        "--public-url",
        "ftp://x",
        "--credentials-key",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    ]);
    assert_eq!(
        c.hub.validate().unwrap_err().variable,
        "PERRY_HUB_PUBLIC_URL"
    );
    let c = parse(&[
        "--public-url",
        "https://h.example/",
        "--credentials-key",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    ]);
    c.hub.validate().unwrap();
    assert_eq!(c.hub.public_url(), "https://h.example");
}

#[test]
fn secrets_are_redacted_in_debug() {
    let c = parse(&[
        "--worker-secret",
        "super-secret-worker-value",
        "--db-password",
        "dbpass-xyz",
    ]);
    let debug = format!("{c:?}");
    assert!(!debug.contains("super-secret-worker-value"));
    assert!(!debug.contains("dbpass-xyz"));
    assert!(debug.contains("[redacted]"));
}

#[test]
fn secret_matching_is_exact() {
    let s = Secret::new("s3cret-s3cret-s3cret");
    assert!(s.matches("s3cret-s3cret-s3cret"));
    assert!(!s.matches("junks3cret-s3cret-s3cret"));
    assert!(!s.matches("s3cret-s3cret-s3cre"));
    assert!(!Secret::default().matches(""));
}

#[test]
fn amqp_url_gets_heartbeat_and_bad_values_fail() {
    let c = parse(&["--amqp-url", "amqp://u:p@rabbit:5672/%2f"]);
    assert!(c.amqp.configured());
    assert_eq!(
        c.amqp.url_with_heartbeat(),
        "amqp://u:p@rabbit:5672/%2f?heartbeat=15"
    );
    c.amqp.validate().unwrap();
    c.amqp.require("ingest").unwrap();
    let c = parse(&["--amqp-url", "http://x", "--amqp-prefix", "a b"]);
    assert_eq!(c.amqp.validate().unwrap_err().variable, "AMQP_URL");
}

#[test]
fn without_amqp_url_only_the_all_in_one_hub_may_start() {
    for unset in ["", "  "] {
        let c = parse(&["--amqp-url", unset]);
        assert!(!c.amqp.configured(), "{unset:?}");
        // `perry-hub all` validates and then runs on the in-process queue.
        c.amqp.validate().unwrap();
        for role in ["ingest", "dispatcher", "finisher", "download"] {
            let err = c.amqp.require(role).unwrap_err();
            assert_eq!(err.variable, "AMQP_URL");
            assert!(err.reason.starts_with("AMQP_URL_REQUIRED: "), "{err}");
            assert!(err.reason.contains(role), "{err}");
        }
    }
    // The broker's CA file means nothing without a broker.
    let c = parse(&["--amqp-url", "", "--amqp-tls-ca-file", "/etc/hosts"]);
    assert_eq!(
        c.amqp.validate().unwrap_err().variable,
        "PERRY_AMQP_TLS_CA_FILE"
    );
}

#[test]
fn s3_backend_requires_a_bucket_and_both_keys_or_neither() {
    let c = parse(&["--blob-backend", "s3"]);
    assert_eq!(c.blob.validate().unwrap_err().variable, "PERRY_S3_BUCKET");
    // Neither key: the standard AWS credential chain.
    parse(&["--blob-backend", "s3", "--s3-bucket", "b"])
        .blob
        .validate()
        .unwrap();
    let c = parse(&[
        "--blob-backend",
        "s3",
        "--s3-bucket",
        "b",
        "--s3-access-key-id",
        "k",
    ]);
    assert_eq!(
        c.blob.validate().unwrap_err().variable,
        "PERRY_S3_ACCESS_KEY_ID"
    );
}

#[test]
fn database_url_overrides_parts() {
    let c = parse(&["--database-url", "mysql://u:p@db.example:3307/hub"]);
    let opts = c.db.connect_options().unwrap();
    assert_eq!(opts.get_host(), "db.example");
    assert_eq!(opts.get_port(), 3307);
    let c = parse(&["--database-url", "postgres://x"]);
    assert_eq!(c.db.connect_options().unwrap_err().variable, "DATABASE_URL");
}
