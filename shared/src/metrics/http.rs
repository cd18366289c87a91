//! Counting and timing every HTTP request by method, route and status. The route is the
//! matched pattern (`/api/v1/jobs/{job_id}`), never the raw path, so ids do not become labels;
//! a request that matched no route counts as `unmatched`.

use axum::{body::Body, extract::MatchedPath, http::Request, middleware::Next, response::Response};

use super::Labels;

/// Middleware: count and time the request (to the response head).
pub async fn track(req: Request<Body>, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let labels: Labels = vec![
        ("method".to_owned(), method),
        ("route".to_owned(), route),
        ("status".to_owned(), response.status().as_u16().to_string()),
    ];
    let m = super::get();
    m.http_requests.get_or_create(&labels).inc();
    m.http_request_duration_seconds
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}
