//! TLS to MySQL and RabbitMQ (issue 15 item 11), against the TLS-only servers that
//! `scripts/tls-services.sh` starts (MariaDB on 3310 with `require_secure_transport`, RabbitMQ
//! with only an amqps listener on 5671) and its throw-away CA. `make test` starts them and sets
//! `PERRY_TEST_REQUIRE_TLS`, so a missing server fails the run; a bare `cargo nextest` without
//! the variables says so and checks nothing.

use std::{path::PathBuf, time::Duration};

use clap::Parser;
use shared::{
    config::{AmqpConfig, DbConfig, Secret},
    queue::Broker,
};

fn tls_env() -> Option<(String, String, PathBuf)> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match (
        var("PERRY_TEST_MYSQL_TLS_URL"),
        var("PERRY_TEST_AMQPS_URL"),
        var("PERRY_TEST_TLS_CA"),
    ) {
        (Some(mysql), Some(amqps), Some(ca)) => Some((mysql, amqps, PathBuf::from(ca))),
        _ => {
            // `make test` starts the servers and requires them; a bare `cargo nextest` run
            // without them says so.
            assert!(
                std::env::var_os("PERRY_TEST_REQUIRE_TLS").is_none(),
                "TLS servers not configured: scripts/tls-services.sh prints the variables"
            );
            eprintln!(
                "TLS servers not configured: run scripts/tls-services.sh and export what it prints"
            );
            None
        }
    }
}

#[derive(Parser)]
struct Fragments {
    #[command(flatten)]
    db: DbConfig,
    #[command(flatten)]
    amqp: AmqpConfig,
}

fn fragments() -> Fragments {
    Fragments::parse_from(["test"])
}

#[tokio::test]
async fn mysql_over_tls_verifies_the_server_and_plain_text_is_refused() {
    let Some((url, _, ca)) = tls_env() else {
        return;
    };
    let mut db = fragments().db;
    db.url = Some(Secret::new(url));
    db.ssl_mode = "verify_identity".into();
    db.ssl_ca = Some(ca);
    let pool = shared::db::connect(&db, Duration::from_secs(10))
        .await
        .expect("TLS connection");
    let (_, cipher): (String, String) = sqlx::query_as("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        .fetch_one(&pool)
        .await
        .expect("cipher");
    assert!(!cipher.is_empty(), "the session is not encrypted");
    shared::db::migrate(&pool)
        .await
        .expect("migrations over TLS");
    pool.close().await;
    // Without TLS the server refuses the session.
    db.ssl_mode = "disabled".into();
    db.ssl_ca = None;
    assert!(shared::db::connect(&db, Duration::from_millis(100))
        .await
        .is_err());
    // Verifying without the CA fails: the certificate is really checked.
    db.ssl_mode = "verify_ca".into();
    assert!(shared::db::connect(&db, Duration::from_millis(100))
        .await
        .is_err());
}

#[tokio::test]
async fn amqps_connects_over_tls_and_checks_the_certificate() {
    let Some((_, url, ca)) = tls_env() else {
        return;
    };
    let mut amqp = fragments().amqp;
    amqp.url = Secret::new(url);
    amqp.prefix = shared::testing::unique("tls");
    amqp.tls_ca_file = Some(ca);
    amqp.validate().expect("valid settings");
    let broker = Broker::new(&amqp, "tls-test");
    let channel = broker.channel().await.expect("amqps channel");
    assert!(channel.status().connected());
    broker.close().await;
    // The test CA is not a public one: without it the handshake fails.
    amqp.tls_ca_file = None;
    let untrusted = Broker::new(&amqp, "tls-untrusted");
    assert!(untrusted.channel().await.is_err());
    untrusted.close().await;
    // And a plain amqp:// URL to the TLS port does not get a session either.
    amqp.url = Secret::new(amqp.url.expose().replacen("amqps://", "amqp://", 1));
    let plain = Broker::new(&amqp, "tls-plain");
    assert!(plain.channel().await.is_err());
}
