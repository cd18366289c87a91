//! A fake Azure (identity platform + Resource Manager) on 127.0.0.1: records every request,
//! checks the token request's form body, the bearer header, the VM paths and the API version,
//! and answers start/deallocate with scripted statuses and delays (default: 202 with an
//! `Azure-AsyncOperation` URL that reports `InProgress` once, then `Succeeded`). With a boot
//! time ([`FakeAzure::set_boot`]), a start's operation stays `InProgress` until the VM is up,
//! and [`FakeAzure::is_up`] tells a harness when to connect the VM's sign worker.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Bytes,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    Router,
};
use serde_json::json;

/// Identity of the fake service principal and VM.
pub const TENANT: &str = "tenant-0001";
pub const CLIENT_ID: &str = "client-0001";
pub const CLIENT_SECRET: &str = "azure-client-secret-value-0123456789";
pub const SUBSCRIPTION: &str = "sub-0001";
pub const RESOURCE_GROUP: &str = "rg-sign";
pub const VM: &str = "vm-sign-1";

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Request {
    /// HTTP method.
    pub method: Method,
    /// Path.
    pub path: String,
    /// Query string (without `?`).
    pub query: String,
    /// `Authorization` header.
    pub authorization: Option<String>,
    /// Body as text.
    pub body: String,
    /// When it arrived.
    pub at: tokio::time::Instant,
}

/// A scripted answer to the next start/deallocate call.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status to answer.
    pub status: u16,
    /// Delay before answering.
    pub delay: Duration,
    /// Body (JSON).
    pub body: serde_json::Value,
}

impl Reply {
    /// An error status with an ARM error body.
    pub fn error(status: u16, code: &str) -> Self {
        Self {
            status,
            delay: Duration::ZERO,
            body: json!({"error": {"code": code, "message": "simulated"}}),
        }
    }
}

#[derive(Default)]
struct State {
    requests: Vec<Request>,
    problems: Vec<String>,
    tokens_issued: u32,
    /// Issued tokens: (header value, issued at, lifetime).
    issued: Vec<(String, tokio::time::Instant, Duration)>,
    expires_in: u64,
    script: VecDeque<Reply>,
    polls: u32,
    /// How long a start takes to bring the VM up.
    boot: Duration,
    /// When the VM is (or will be) up; `None` while deallocated.
    up_at: Option<tokio::time::Instant>,
}

/// The running fake.
#[derive(Clone)]
pub struct FakeAzure {
    /// Base URL (`http://127.0.0.1:<port>`), used as both login and management URL.
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl FakeAzure {
    /// Start on a random port; tokens live `expires_in` seconds.
    pub async fn start(expires_in: u64) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake azure");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(State {
            expires_in,
            ..State::default()
        }));
        let fake = Self { url, state };
        let f = fake.clone();
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let f = f.clone();
                async move { f.handle(method, &uri, &headers, &body).await }
            },
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        fake
    }

    /// Answer the next start/deallocate calls with these replies, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.lock().script.extend(replies);
    }

    /// From now on a start brings the VM up after `boot` (its async operation reports
    /// `InProgress` until then).
    pub fn set_boot(&self, boot: Duration) {
        self.lock().boot = boot;
    }

    /// Whether a start has brought the VM up (and no deallocate followed).
    pub fn is_up(&self) -> bool {
        self.lock()
            .up_at
            .is_some_and(|at| at <= tokio::time::Instant::now())
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    /// Requests to a VM action (`start`, `deallocate`, `powerOff`, ...).
    pub fn vm_calls(&self, action: &str) -> usize {
        let suffix = format!("/{action}");
        self.requests()
            .iter()
            .filter(|r| r.method == Method::POST && r.path.ends_with(&suffix))
            .count()
    }

    /// Arrival times of the requests to a VM action.
    pub fn vm_call_times(&self, action: &str) -> Vec<tokio::time::Instant> {
        let suffix = format!("/{action}");
        self.requests()
            .iter()
            .filter(|r| r.method == Method::POST && r.path.ends_with(&suffix))
            .map(|r| r.at)
            .collect()
    }

    /// Token requests so far.
    pub fn token_requests(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.path.ends_with("/oauth2/v2.0/token"))
            .count()
    }

    /// Whatever the fake found wrong in the requests (must stay empty).
    pub fn problems(&self) -> Vec<String> {
        self.lock().problems.clone()
    }

    /// Finisher arguments pointing the Azure settings at this fake.
    pub fn args(&self) -> Vec<String> {
        [
            ("--azure-tenant-id", TENANT),
            ("--azure-client-id", CLIENT_ID),
            ("--azure-client-secret", CLIENT_SECRET),
            ("--azure-subscription-id", SUBSCRIPTION),
            ("--azure-vm-resource-group", RESOURCE_GROUP),
            ("--azure-vm-name", VM),
            ("--azure-login-url", &self.url),
            ("--azure-management-url", &self.url),
            ("--azure-retry-base-ms", "20"),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_owned(), v.to_owned()])
        .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn problem(&self, p: String) {
        self.lock().problems.push(p);
    }

    async fn handle(
        &self,
        method: Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Response {
        let request = Request {
            method: method.clone(),
            path: uri.path().to_owned(),
            query: uri.query().unwrap_or_default().to_owned(),
            authorization: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: String::from_utf8_lossy(body).into_owned(),
            at: tokio::time::Instant::now(),
        };
        self.lock().requests.push(request.clone());
        let vm_prefix = format!(
            "/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Compute/virtualMachines/{VM}/"
        );
        if method == Method::POST && request.path == format!("/{TENANT}/oauth2/v2.0/token") {
            return self.token(headers, &request);
        }
        if let Some(action) = request.path.strip_prefix(&vm_prefix) {
            return self.vm_action(action, &request).await;
        }
        if method == Method::GET && request.path.starts_with("/operations/") {
            self.check_bearer(&request);
            let mut s = self.lock();
            s.polls += 1;
            let booting = request.path.starts_with("/operations/start-")
                && s.up_at.is_some_and(|at| at > tokio::time::Instant::now());
            let status = if booting || s.polls % 2 == 1 {
                "InProgress"
            } else {
                "Succeeded"
            };
            return (
                StatusCode::OK,
                [("retry-after", "0")],
                axum::Json(json!({"status": status})),
            )
                .into_response();
        }
        self.problem(format!("unexpected request {method} {}", request.path));
        StatusCode::NOT_FOUND.into_response()
    }

    fn token(&self, headers: &HeaderMap, r: &Request) -> Response {
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if content_type != "application/x-www-form-urlencoded" {
            self.problem(format!("token request content-type {content_type:?}"));
        }
        let parsed = reqwest::Url::parse(&format!("http://x/?{}", r.body)).expect("form");
        let mut pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        pairs.sort();
        let mut expected: Vec<(String, String)> = [
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("grant_type", "client_credentials"),
            ("scope", "https://management.azure.com/.default"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        expected.sort();
        if pairs != expected {
            self.problem(format!("token form body {pairs:?}"));
        }
        if r.authorization.is_some() {
            self.problem("token request carried an Authorization header".into());
        }
        let mut s = self.lock();
        s.tokens_issued += 1;
        let token = format!("fake-token-{}", s.tokens_issued);
        let lifetime = Duration::from_secs(s.expires_in);
        s.issued.push((
            format!("Bearer {token}"),
            tokio::time::Instant::now(),
            lifetime,
        ));
        let body = json!({"token_type": "Bearer", "expires_in": s.expires_in, "ext_expires_in": s.expires_in, "access_token": token});
        axum::Json(body).into_response()
    }

    /// The bearer must be a token this fake issued, still valid.
    fn check_bearer(&self, r: &Request) {
        let found = {
            let s = self.lock();
            s.issued
                .iter()
                .find(|(t, ..)| Some(t.as_str()) == r.authorization.as_deref())
                .map(|(_, at, life)| at.elapsed() <= *life)
        };
        match found {
            Some(true) => {}
            Some(false) => self.problem(format!("{} {} with an expired token", r.method, r.path)),
            None => self.problem(format!(
                "{} {} with authorization {:?}",
                r.method, r.path, r.authorization
            )),
        }
    }

    async fn vm_action(&self, action: &str, r: &Request) -> Response {
        self.check_bearer(r);
        if r.query != "api-version=2024-07-01" {
            self.problem(format!("{action} with query {:?}", r.query));
        }
        if !r.body.is_empty() {
            self.problem(format!("{action} with a body"));
        }
        if action != "start" && action != "deallocate" {
            self.problem(format!("unexpected VM action {action}"));
        }
        let reply = {
            let mut s = self.lock();
            let reply = s.script.pop_front();
            let accepted = reply.as_ref().is_none_or(|r| r.status / 100 == 2);
            match action {
                "start" if accepted => {
                    let now = tokio::time::Instant::now();
                    s.up_at = Some(s.up_at.unwrap_or(now + s.boot));
                }
                "deallocate" if accepted => s.up_at = None,
                _ => {}
            }
            reply
        };
        match reply {
            Some(reply) => {
                tokio::time::sleep(reply.delay).await;
                let status = StatusCode::from_u16(reply.status).expect("status");
                let mut resp = (status, axum::Json(reply.body)).into_response();
                if reply.status == 429 {
                    resp.headers_mut()
                        .insert("retry-after", axum::http::HeaderValue::from_static("0"));
                }
                resp
            }
            None => {
                let op = format!("{}/operations/{action}-{}", self.url, uuid::Uuid::new_v4());
                (
                    StatusCode::ACCEPTED,
                    [("azure-asyncoperation", op.as_str()), ("retry-after", "0")],
                )
                    .into_response()
            }
        }
    }
}
