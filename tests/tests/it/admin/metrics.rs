//! `/metrics` in the OpenMetrics format, with the figures worth alerting on; and the Grafana
//! dashboard and Prometheus rules under `deploy/`, which may name only metrics the hub exports.

use std::collections::BTreeSet;

use perry_hub_tests::{sim, TestHub};
use serde_json::json;

async fn scrape(hub: &TestHub) -> (String, String) {
    let resp = hub
        .http
        .get(hub.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    (content_type, resp.text().await.expect("text"))
}

/// The value of the sample `name{labels}` (labels exactly as written), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .split(' ')
            .next()?
            .parse()
            .ok()
    })
}

/// Every sample name the exposition can contain, from its `# TYPE` lines.
fn sample_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split(' ');
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_count", "_sum"],
            "info" => &["_info"],
            _ => &[""],
        };
        for s in suffixes {
            names.insert(format!("{name}{s}"));
        }
    }
    names
}

#[tokio::test]
async fn metrics_use_the_openmetrics_type_and_carry_the_operator_figures() {
    let hub = TestHub::start().await;
    let (_, license) = hub.insert_license("pro").await;
    let waiting = hub.insert_job(license, "ios", 10, b"t", json!({})).await;
    // It has waited a minute.
    sqlx::query("UPDATE jobs SET enqueued_ms = enqueued_ms - 60000 WHERE id = ?")
        .bind(&waiting)
        .execute(hub.pool())
        .await
        .unwrap();
    let built = hub.insert_job(license, "linux", 10, b"t", json!({})).await;
    let mut worker = hub.worker("linux-m", &["linux"], 1).await;
    let assign = worker.assignment().await;
    let complete = sim::run_assigned_build(&hub, &assign, b"artifact").await;
    worker.send(complete).await;
    hub.wait_state(&built, "completed").await;
    assert_eq!(hub.get_status().await.0, 200);
    assert_eq!(hub.get_job(&waiting, &[]).await.0, 401);

    let (content_type, text) = scrape(&hub).await;

    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    let status =
        r#"perry_hub_http_requests_total{method="GET",route="/api/v1/status",status="200"}"#;
    assert_eq!(sample(&text, status), Some(1.0), "{text}");
    let job =
        r#"perry_hub_http_requests_total{method="GET",route="/api/v1/jobs/{job_id}",status="401"}"#;
    assert_eq!(sample(&text, job), Some(1.0), "{text}");
    let timed = r#"perry_hub_http_request_duration_seconds_count{method="GET",route="/api/v1/status",status="200"}"#;
    assert_eq!(sample(&text, timed), Some(1.0), "{text}");
    assert_eq!(
        sample(&text, r#"perry_hub_queue_depth{target="ios"}"#),
        Some(1.0)
    );
    let wait = sample(
        &text,
        r#"perry_hub_queue_oldest_wait_seconds{target="ios"}"#,
    )
    .unwrap();
    assert!((60.0..600.0).contains(&wait), "{wait}");
    assert_eq!(
        sample(
            &text,
            r#"perry_hub_queue_oldest_wait_seconds{target="linux"}"#
        ),
        Some(0.0)
    );
    let builds = r#"perry_hub_build_duration_seconds_count{target="linux",outcome="completed"}"#;
    assert_eq!(sample(&text, builds), Some(1.0), "{text}");
    let version = format!(
        r#"perry_hub_build_info{{version="{}"}}"#,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&text, &version), Some(1.0), "{text}");
    assert!(
        sample(&text, "perry_hub_outbox_backlog").is_some(),
        "{text}"
    );
    assert!(
        sample(&text, "perry_hub_outbox_oldest_unsent_seconds").is_some(),
        "{text}"
    );
    let max = sample(&text, r#"perry_hub_db_pool_connections{state="max"}"#).unwrap();
    assert!(max >= 1.0, "{text}");
    assert!(sample(&text, r#"perry_hub_db_pool_connections{state="in_use"}"#).is_some());
    hub.stop().await;
}

#[tokio::test]
async fn the_dashboard_and_alert_rules_name_only_exported_metrics() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let rules = std::fs::read_to_string(root.join("deploy/prometheus/alerts.yml")).unwrap();
    let dashboard = std::fs::read_to_string(root.join("deploy/grafana/perry-hub.json")).unwrap();
    let hub = TestHub::start().await;
    let (_, text) = scrape(&hub).await;
    let exported = sample_names(&text);

    // The dashboard: valid JSON, every panel queries something.
    let doc: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard JSON");
    let panels = doc["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8);
    for p in panels {
        let exprs = p["targets"].as_array().expect("targets");
        assert!(
            !exprs.is_empty()
                && exprs
                    .iter()
                    .all(|t| t["expr"].as_str().is_some_and(|e| !e.is_empty())),
            "{}",
            p["title"]
        );
    }
    // The rules: every alert has an expression and a severity.
    let alerts = rules.matches("- alert:").count();
    assert!(alerts >= 6);
    assert_eq!(rules.matches("expr:").count(), alerts);
    assert_eq!(rules.matches("severity:").count(), alerts);

    let mut named = BTreeSet::new();
    for text in [&rules, &dashboard] {
        for (i, _) in text.match_indices("perry_hub_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            named.insert(name);
        }
    }
    let unknown: Vec<_> = named.iter().filter(|n| !exported.contains(*n)).collect();
    assert!(
        unknown.is_empty(),
        "not exported: {unknown:?}\n{exported:?}"
    );
    assert!(named.len() >= 10, "{named:?}");

    // With promtool (Debian's `prometheus`), the rules are checked and their unit tests run.
    let dir = root.join("deploy/prometheus");
    if let Ok(out) = std::process::Command::new("promtool")
        .current_dir(&dir)
        .args(["check", "rules", "alerts.yml"])
        .output()
    {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let out = std::process::Command::new("promtool")
            .current_dir(&dir)
            .args(["test", "rules", "alerts.test.yml"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    hub.stop().await;
}
