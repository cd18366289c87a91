//! Oversized and failing build submissions: the tarball cap, the body limit, large forms and
//! extra parts, credentials too big for a worker frame, and a storage failure, each refused with
//! its code and leaving nothing behind (no job row, outbox row, rate hit or blob).

use perry_hub_tests::{HubOptions, TestHub};
use serde_json::json;

use super::support::{self, assert_error, b64, cli_form, leftovers, manifest, multipart, BOUNDARY};

#[tokio::test]
async fn a_tarball_over_the_tier_cap_is_413_after_the_licence_checks() {
    let hub = support::hub_with(|s| s.free_tarball_cap_bytes = 1024).await;
    let key = hub.registered_license().await;
    let big = vec![7u8; 4096];
    let before = leftovers(&hub).await;

    let over = hub
        .submit_build(
            cli_form(
                &manifest("linux", "com.example.big"),
                &json!({}),
                &big,
                &key,
            ),
            &[],
        )
        .await;
    assert_error(&over, 413, "UPLOAD_TOO_LARGE");
    let unknown_key = hub
        .submit_build(
            cli_form(
                &manifest("linux", "com.example.big"),
                &json!({}),
                &big,
                "FREE-0000-0000-0000",
            ),
            &[],
        )
        .await;
    assert_error(&unknown_key, 401, "LICENSE_INVALID");
    let no_key = hub
        .submit_build(
            multipart(&[
                ("manifest", manifest("linux", "x").to_string().as_bytes()),
                ("tarball_b64", b64(&big).as_bytes()),
            ]),
            &[],
        )
        .await;
    assert_error(&no_key, 400, "BAD_REQUEST");
    // Key before the tarball: the cap is known while streaming.
    let early_key = multipart(&[
        ("license_key", key.as_bytes()),
        (
            "manifest",
            manifest("linux", "com.example.big").to_string().as_bytes(),
        ),
        ("tarball_b64", b64(&big).as_bytes()),
    ]);
    assert_error(
        &hub.submit_build(early_key, &[]).await,
        413,
        "UPLOAD_TOO_LARGE",
    );
    let raw_manifest = manifest("linux", "com.example.big").to_string();
    let raw_headers = [
        ("x-perry-manifest", raw_manifest.as_str()),
        ("x-perry-license-key", key.as_str()),
    ];
    let raw = hub.submit_raw_build(big.clone(), &raw_headers).await;
    assert_error(&raw, 413, "UPLOAD_TOO_LARGE");

    assert_eq!(leftovers(&hub).await, before);
    let fits = hub
        .submit_build(
            cli_form(
                &manifest("linux", "com.example.big"),
                &json!({}),
                &big[..1024],
                &key,
            ),
            &[],
        )
        .await;
    assert_eq!(fits.0, 200, "{}", fits.1);
    hub.stop().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_whether_declared_or_streamed() {
    let hub = support::hub_with(|s| s.max_body_bytes = 8 * 1024).await;
    let key = hub.registered_license().await;
    let body = cli_form(
        &manifest("linux", "com.example.body"),
        &json!({}),
        &vec![1u8; 16 * 1024],
        &key,
    );
    let before = leftovers(&hub).await;

    let declared = hub.submit_build(body.clone(), &[]).await;
    assert_error(&declared, 413, "UPLOAD_TOO_LARGE");

    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(1000).map(|c| Ok(c.to_vec())).collect();
    let resp = hub
        .http
        .post(hub.url("/api/v1/build"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("request");
    let streamed = (
        resp.status().as_u16(),
        resp.json().await.unwrap_or_default(),
    );
    assert_error(&streamed, 413, "UPLOAD_TOO_LARGE");

    assert_eq!(leftovers(&hub).await, before);
    hub.stop().await;
}

#[tokio::test]
async fn a_storage_failure_is_500_internal_error_and_leaves_no_job() {
    let hub = TestHub::start().await;
    let key = hub.registered_license().await;
    let mut broken = hub.blob_config.clone();
    // Nothing listens on the discard port: every S3 call fails.
    broken.s3_endpoint = Some("http://127.0.0.1:9".to_owned());
    let replica = TestHub::start_with(HubOptions {
        replica_of: Some((hub.db().config.clone(), hub.amqp.clone(), broken)),
        ..HubOptions::default()
    })
    .await;
    let before = leftovers(&hub).await;

    let got = replica
        .submit_build(
            cli_form(&manifest("linux", "com.example.s3"), &json!({}), b"t", &key),
            &[],
        )
        .await;

    assert_error(&got, 500, "INTERNAL_ERROR");
    assert_eq!(got.1["error"]["message"], "Internal server error");
    assert_eq!(leftovers(&hub).await, before);
    replica.stop().await;
    hub.stop().await;
}

#[tokio::test]
async fn a_refusal_before_the_tarball_still_reaches_a_client_sending_a_large_form() {
    let hub = TestHub::start().await;
    let tarball = vec![3u8; 24 * 1024 * 1024];
    let form = cli_form(
        &manifest("linux", "com.example.drain"),
        &json!({}),
        &tarball,
        "",
    );
    let before = leftovers(&hub).await;

    let got = hub
        .submit_build(
            form,
            &[(
                "authorization",
                "Bearer 0f8fad5b-d9cb-469f-a165-70867728950e",
            )],
        )
        .await;

    assert_error(&got, 401, "AUTH_INVALID");
    assert_eq!(leftovers(&hub).await, before);
    hub.stop().await;
}

#[tokio::test]
async fn bytes_that_are_not_field_data_and_extra_parts_are_capped() {
    let hub = TestHub::start().await;
    let key = hub.registered_license().await;
    let form = || {
        cli_form(
            &manifest("linux", "com.example.framing"),
            &json!({}),
            b"tarball",
            &key,
        )
    };
    let before = leftovers(&hub).await;

    // A preamble before the first boundary: the parser would buffer it up to the body limit.
    let mut preamble = vec![b'p'; 200 * 1024];
    preamble.extend_from_slice(b"\r\n");
    preamble.extend_from_slice(&form());
    let got = hub.submit_build(preamble, &[]).await;
    assert_error(&got, 413, "UPLOAD_TOO_LARGE");
    assert!(
        got.1["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("part headers")),
        "{}",
        got.1
    );

    // One endless part header.
    let mut endless = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"x\"\r\nX-Filler: {}\r\n\r\nv\r\n",
        "h".repeat(200 * 1024)
    )
    .into_bytes();
    endless.extend_from_slice(&form());
    assert_error(
        &hub.submit_build(endless, &[]).await,
        413,
        "UPLOAD_TOO_LARGE",
    );

    // More parts than a form has any use for.
    let filler: Vec<(String, Vec<u8>)> =
        (0..17).map(|i| (format!("x{i}"), b"v".to_vec())).collect();
    let mut parts: Vec<(&str, &[u8])> = filler
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    let tar = b64(b"tarball");
    let m = manifest("linux", "com.example.framing").to_string();
    parts.extend([
        ("manifest", m.as_bytes()),
        ("tarball_b64", tar.as_bytes()),
        ("license_key", key.as_bytes()),
    ]);
    let got = hub.submit_build(multipart(&parts), &[]).await;
    assert_error(&got, 400, "BAD_REQUEST");
    assert!(
        got.1["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Too many parts")),
        "{}",
        got.1
    );
    assert_eq!(leftovers(&hub).await, before);

    // A CLI form with a few unknown parts is still fine.
    let got = hub.submit_build(multipart(&parts[12..]), &[]).await;
    assert_eq!(got.0, 200, "{}", got.1);
    hub.stop().await;
}

#[tokio::test]
async fn credentials_a_worker_frame_cannot_carry_are_413() {
    let hub = TestHub::start().await;
    let key = hub.registered_license().await;
    let room = protocol::MAX_JOB_ASSIGN_BYTES - protocol::JOB_ASSIGN_OVERHEAD_BYTES;
    // Under the credentials part's own cap, over what a `job_assign` can carry.
    let keystore = "k".repeat(room);
    let form = cli_form(
        &manifest("linux", "com.example.frame"),
        &json!({"android_keystore": keystore}),
        b"tarball",
        &key,
    );
    let before = leftovers(&hub).await;

    let got = hub.submit_build(form, &[]).await;

    assert_error(&got, 413, "UPLOAD_TOO_LARGE");
    assert!(
        got.1["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("too large to send to a build worker")),
        "{}",
        got.1
    );
    assert_eq!(leftovers(&hub).await, before);
    hub.stop().await;
}
