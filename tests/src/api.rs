//! A typed client on [`TestHub`]: one method per HTTP endpoint of the hub (the route tables of
//! `ingest::router` and `download::router`), each answering the status and the parsed JSON body
//! as a [`Reply`]. Extra headers (authorisation variants, idempotency keys, ranges) are passed as
//! `(name, value)` pairs, so a scenario states exactly what it sends. The body helpers build
//! requests as the CLI and the workers send them.

use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::{FakeWorker, TestHub};

/// Status and JSON body of a response (`null` when the body is not JSON).
pub type Reply = (u16, Value);

/// Extra request headers.
pub type Headers<'a> = &'a [(&'a str, &'a str)];

/// Boundary of the multipart bodies built here.
pub const BOUNDARY: &str = "----perry-test-boundary-7d1f";

impl TestHub {
    /// `GET /api/v1/status`.
    pub async fn get_status(&self) -> Reply {
        self.get_json("/api/v1/status", &[]).await
    }

    /// `POST /api/v1/license/register`.
    pub async fn register_license(&self, body: &Value, headers: Headers<'_>) -> Reply {
        self.post_json("/api/v1/license/register", body, headers)
            .await
    }

    /// `POST /api/v1/license/verify`.
    pub async fn verify_license(&self, body: &Value, headers: Headers<'_>) -> Reply {
        self.post_json("/api/v1/license/verify", body, headers)
            .await
    }

    /// `GET /api/v1/account`.
    pub async fn get_account(&self, headers: Headers<'_>) -> Reply {
        self.get_json("/api/v1/account", headers).await
    }

    /// `POST /api/v1/account/create`.
    pub async fn create_account(&self, body: &Value, headers: Headers<'_>) -> Reply {
        self.post_json("/api/v1/account/create", body, headers)
            .await
    }

    /// `POST /api/v1/account/update`.
    pub async fn update_account(&self, body: &Value, headers: Headers<'_>) -> Reply {
        self.post_json("/api/v1/account/update", body, headers)
            .await
    }

    /// `POST /api/v1/build` with a multipart body built with [`BOUNDARY`] (see [`cli_form`]).
    pub async fn submit_build(&self, form: Vec<u8>, headers: Headers<'_>) -> Reply {
        let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
        self.post_body("/api/v1/build", &content_type, form, headers)
            .await
    }

    /// `POST /api/v1/build` with the raw tarball as the body (metadata in `headers`).
    pub async fn submit_raw_build(&self, tarball: Vec<u8>, headers: Headers<'_>) -> Reply {
        self.post_body(
            "/api/v1/build",
            "application/octet-stream",
            tarball,
            headers,
        )
        .await
    }

    /// `POST /api/v1/artifact/upload/{job_id}`.
    pub async fn upload_artifact(
        &self,
        job_id: &str,
        content_type: &str,
        body: Vec<u8>,
        headers: Headers<'_>,
    ) -> Reply {
        let path = format!("/api/v1/artifact/upload/{job_id}");
        self.post_body(&path, content_type, body, headers).await
    }

    /// `GET /api/v1/tarball/{job_id}`; the response itself, since a success is not JSON.
    pub async fn fetch_tarball(&self, job_id: &str, headers: Headers<'_>) -> reqwest::Response {
        self.get_raw(&format!("/api/v1/tarball/{job_id}"), headers)
            .await
    }

    /// `GET /api/v1/dl/{token}`; the response itself, since a success is not JSON.
    pub async fn download(&self, token: &str, headers: Headers<'_>) -> reqwest::Response {
        self.get_raw(&format!("/api/v1/dl/{token}"), headers).await
    }

    /// `GET /api/v1/admin/workers`.
    pub async fn admin_workers(&self, headers: Headers<'_>) -> Reply {
        self.get_json("/api/v1/admin/workers", headers).await
    }

    /// `POST /api/v1/admin/update-perry`.
    pub async fn admin_update_perry(&self, body: &Value, headers: Headers<'_>) -> Reply {
        self.post_json("/api/v1/admin/update-perry", body, headers)
            .await
    }

    /// `GET /api/v1/jobs/{job_id}`.
    pub async fn get_job(&self, job_id: &str, headers: Headers<'_>) -> Reply {
        self.get_json(&format!("/api/v1/jobs/{job_id}"), headers)
            .await
    }

    /// `GET /api/v1/openapi.json`.
    pub async fn get_openapi(&self) -> Reply {
        self.get_json("/api/v1/openapi.json", &[]).await
    }

    /// `Authorization` value carrying the admin secret.
    pub fn admin_auth(&self) -> String {
        format!("Bearer {}", self.admin_secret())
    }

    /// Register a free licence through the API; its key.
    pub async fn registered_license(&self) -> String {
        let reply = self.register_license(&json!({}), &[]).await;
        typed::<protocol::RegisterResponse>(&reply).license_key
    }

    /// Create an account through the admin API; (account id, API token).
    pub async fn new_account(&self, github_id: u64) -> (String, String) {
        let body = json!({"github_id": github_id, "github_username": format!("user{github_id}"), "email": "dev@example.com"});
        let admin = self.admin_auth();
        let reply = self
            .create_account(&body, &[("authorization", &admin)])
            .await;
        let created: protocol::AccountCreateResponse = typed(&reply);
        (created.id, created.api_token)
    }

    /// Submit a linux build with a fresh licence and assign it to a new worker: (job id, job
    /// token, worker).
    pub async fn assigned_job(&self) -> (String, String, FakeWorker) {
        let key = self.registered_license().await;
        let form = cli_form(
            &manifest("linux", "com.example.demo"),
            &json!({}),
            b"tarball",
            &key,
        );
        let build: protocol::BuildResponse = typed(&self.submit_build(form, &[]).await);
        let mut worker = self.worker("linux-1", &["linux"], 1).await;
        let assign = worker.assignment().await;
        assert_eq!(assign["job_id"], build.job_id.as_str());
        let token = assign["auth_token"]
            .as_str()
            .expect("auth_token")
            .to_owned();
        (build.job_id, token, worker)
    }

    /// A GET of any path with extra headers.
    pub async fn get_json(&self, path: &str, headers: Headers<'_>) -> Reply {
        reply(self.get_raw(path, headers).await).await
    }

    /// A JSON POST of any path.
    pub async fn post_json(&self, path: &str, body: &Value, headers: Headers<'_>) -> Reply {
        let body = body.to_string().into_bytes();
        self.post_body(path, "application/json", body, headers)
            .await
    }

    /// A POST of any body to any path.
    pub async fn post_body(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        headers: Headers<'_>,
    ) -> Reply {
        let mut req = self
            .http
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        reply(req.send().await.expect("request")).await
    }

    async fn get_raw(&self, path: &str, headers: Headers<'_>) -> reqwest::Response {
        let mut req = self.http.get(self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.expect("request")
    }
}

async fn reply(resp: reqwest::Response) -> Reply {
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The body of a 200 reply as a `protocol` response type (panics with the body otherwise).
#[track_caller]
pub fn typed<T: DeserializeOwned>(reply: &Reply) -> T {
    assert_eq!(reply.0, 200, "{}", reply.1);
    serde_json::from_value(reply.1.clone())
        .unwrap_or_else(|e| panic!("unexpected response shape ({e}): {}", reply.1))
}

/// Assert an error envelope with `status` and `code` and a non-empty message.
#[track_caller]
pub fn assert_error(got: &Reply, status: u16, code: &str) {
    assert_eq!(got.0, status, "status of {}", got.1);
    assert_eq!(got.1["error"]["code"], code, "code of {}", got.1);
    assert!(
        got.1["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "message of {}",
        got.1
    );
}

/// A manifest as the CLI sends it.
pub fn manifest(target: &str, bundle_id: &str) -> Value {
    json!({
        "app_name": "Demo App",
        "bundle_id": bundle_id,
        "version": "1.0.0",
        "short_version": null,
        "entry": "src/main.ts",
        "icon": null,
        "targets": [target],
        "category": null,
        "minimum_os_version": null,
        "entitlements": null
    })
}

/// Standard base64.
pub fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// A multipart body of text parts (no filename, no content type), in the given order, with
/// [`BOUNDARY`] (hand-built, so tests control part order and can send malformed ones).
pub fn multipart(parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in parts {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// The CLI's form: manifest, credentials, tarball_b64, license_key.
pub fn cli_form(
    manifest: &Value,
    credentials: &Value,
    tarball: &[u8],
    license_key: &str,
) -> Vec<u8> {
    multipart(&[
        ("manifest", manifest.to_string().as_bytes()),
        ("credentials", credentials.to_string().as_bytes()),
        ("tarball_b64", b64(tarball).as_bytes()),
        ("license_key", license_key.as_bytes()),
    ])
}
