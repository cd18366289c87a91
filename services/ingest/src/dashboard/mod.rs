//! The operators' web dashboard at `/admin` (issue 17): server-rendered pages over the same
//! queries as the admin API, one small script (live log, refresh), no build step.
//!
//! Signing in: a form posts the admin secret once; the answer sets `perry_admin`, a session
//! cookie (`HttpOnly`, `Secure`, `SameSite=Strict`, path `/admin`, 12 hours) whose value is its
//! expiry and an HMAC of it under the admin secret: any replica checks it without shared
//! state, and changing the secret ends every session. The secret never appears in a URL or a
//! page. Every form that changes something carries a token derived from the cookie (CSRF), and
//! is refused without it.

mod build;
mod html;
mod pages;
mod workers;

use axum::{
    body::Bytes,
    extract::{FromRequestParts, State},
    http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
    Router,
};
use shared::{auth, clock::now_ms};

use crate::AppState;

/// Name of the session cookie.
pub const COOKIE: &str = "perry_admin";
/// How long a session lasts.
pub const SESSION_MS: i64 = 12 * 3600 * 1000;

/// The dashboard's routes (under `/admin`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin", get(pages::overview))
        .route("/admin/", get(|| async { Redirect::to("/admin") }))
        .route("/admin/login", get(login_form).post(login))
        .route("/admin/logout", post(logout))
        .route("/admin/builds", get(pages::builds))
        .route("/admin/builds/{job_id}", get(build::build))
        .route("/admin/builds/{job_id}/{action}", post(build::job_action))
        .route("/admin/workers", get(workers::workers))
        .route(
            "/admin/workers/{name}/{action}",
            post(workers::worker_action),
        )
        .route("/admin/static/app.css", get(css))
        .route("/admin/static/app.js", get(js))
}

/// A signed-in operator (the session cookie checked). Pages redirect to the login form
/// without one.
#[derive(Debug, Clone)]
pub struct Operator {
    /// The form token of this session.
    pub csrf: String,
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let secret = state.deps.hub.admin_secret.expose();
        session_cookie(&parts.headers)
            .filter(|value| valid_session(secret, value, now_ms()))
            .map(|value| Self {
                csrf: csrf_token(secret, &value),
            })
            .ok_or_else(|| Redirect::to("/admin/login").into_response())
    }
}

impl Operator {
    /// Whether a form carries this session's token.
    pub fn sent(&self, form: &html::Form) -> bool {
        form.get("csrf")
            .is_some_and(|t| auth::constant_time_eq(t.as_bytes(), self.csrf.as_bytes()))
    }

    /// The answer to a form without it.
    pub fn expired() -> Response {
        (StatusCode::FORBIDDEN, "Form expired: reload the page").into_response()
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

fn sign(secret: &str, label: &str, data: &str) -> String {
    hex::encode(auth::hmac_sha256(
        secret.as_bytes(),
        format!("perry-admin-{label}:{data}").as_bytes(),
    ))
}

/// `v1.<expiry ms>.<hmac>`.
fn new_session(secret: &str, now: i64) -> String {
    let expiry = now + SESSION_MS;
    format!(
        "v1.{expiry}.{}",
        sign(secret, "session", &expiry.to_string())
    )
}

fn valid_session(secret: &str, value: &str, now: i64) -> bool {
    let mut parts = value.split('.');
    let (Some("v1"), Some(expiry), Some(mac), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Ok(at) = expiry.parse::<i64>() else {
        return false;
    };
    !secret.is_empty()
        && at > now
        && at <= now + SESSION_MS
        && auth::constant_time_eq(mac.as_bytes(), sign(secret, "session", expiry).as_bytes())
}

fn csrf_token(secret: &str, session: &str) -> String {
    sign(secret, "csrf", session)
}

async fn login_form() -> Response {
    html::page_response(StatusCode::OK, &html::login_page(None))
}

async fn login(State(state): State<AppState>, body: Bytes) -> Response {
    let form = html::Form::parse(&body);
    let presented = form.get("secret").unwrap_or_default();
    if !state.deps.hub.admin_secret.matches(presented) {
        tracing::warn!("dashboard sign-in refused");
        return html::page_response(
            StatusCode::UNAUTHORIZED,
            &html::login_page(Some("That is not the admin secret.")),
        );
    }
    let value = new_session(state.deps.hub.admin_secret.expose(), now_ms());
    let cookie = format!(
        "{COOKIE}={value}; Path=/admin; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
        SESSION_MS / 1000
    );
    tracing::info!("dashboard sign-in");
    with_cookie(Redirect::to("/admin").into_response(), &cookie)
}

async fn logout() -> Response {
    let cookie = format!("{COOKIE}=; Path=/admin; HttpOnly; Secure; SameSite=Strict; Max-Age=0");
    with_cookie(Redirect::to("/admin/login").into_response(), &cookie)
}

fn with_cookie(mut resp: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", include_str!("assets/app.css"))
}

async fn js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_are_bound_to_the_secret() {
        let now = 1_700_000_000_000;
        let s = new_session("the-admin-secret-0001", now);
        assert!(valid_session("the-admin-secret-0001", &s, now + 1000));
        assert!(!valid_session("another-admin-secret-02", &s, now + 1000));
        assert!(!valid_session(
            "the-admin-secret-0001",
            &s,
            now + SESSION_MS + 1
        ));
        assert!(!valid_session("", &s, now));
        let forged = s.replace(
            &(now + SESSION_MS).to_string(),
            &(now + 2 * SESSION_MS).to_string(),
        );
        assert!(!valid_session("the-admin-secret-0001", &forged, now));
        assert!(!valid_session("the-admin-secret-0001", "v1.x.y", now));
        assert_ne!(csrf_token("k", &s), csrf_token("k", "other"));
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; perry_admin=v1.2.3; b=4"),
        );
        assert_eq!(session_cookie(&h).as_deref(), Some("v1.2.3"));
    }
}
