//! The build page: the build, its attempts and artifacts, and its log, followed live by the
//! page's script; and the cancel and requeue forms.

use std::collections::HashMap;

use axum::{
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use shared::http::ApiError;

use super::{
    html::{action, ago, badge, esc, layout, page_response, seg, table, Form},
    pages::failed,
    Operator,
};
use crate::{access::Admin, admin, AppState};

/// `GET /admin/builds/{job_id}`: the build, its attempts and artifacts, and its log, which
/// the page's script follows over the hub's WebSocket.
pub async fn build(
    State(state): State<AppState>,
    op: Operator,
    Path(job_id): Path<String>,
) -> Response {
    let q: HashMap<String, String> = [("limit".to_owned(), "1".to_owned())].into();
    let job =
        match admin::jobs::get_job(State(state.clone()), Admin, Path(job_id.clone()), Query(q))
            .await
        {
            Ok(j) => j.0,
            Err(e) => return failed(&op, "Build", &e),
        };
    let s = &job.job;
    let id = seg(&s.job_id);
    let mut actions = String::new();
    if !matches!(s.state.as_str(), "completed" | "failed" | "cancelled") {
        actions.push_str(&action(
            &format!("/admin/builds/{id}/cancel"),
            "Cancel build",
            &op.csrf,
            "danger",
        ));
    }
    if s.state == "failed" {
        actions.push_str(&action(
            &format!("/admin/builds/{id}/requeue"),
            "Run again",
            &op.csrf,
            "",
        ));
    }
    let facts = [
        ("State", badge(&s.state)),
        (
            "Target",
            format!(
                "{} (stage {}: {})",
                esc(&s.target),
                s.stage,
                esc(&s.stage_target)
            ),
        ),
        ("Project", esc(&s.project)),
        ("Licence", s.license_id.to_string()),
        ("Worker", esc(s.worker_name.as_deref().unwrap_or("-"))),
        ("Created", ago(Some(s.created_ms))),
        ("Finished", ago(s.finished_ms)),
        (
            "Error",
            format!(
                "<span class=\"reason\">{}</span>",
                esc(s.error.as_deref().unwrap_or("-"))
            ),
        ),
    ]
    .iter()
    .map(|(k, v)| format!("<dt>{k}</dt><dd id=\"fact-{}\">{v}</dd>", k.to_lowercase()))
    .collect::<String>();
    let attempts: Vec<Vec<String>> = job
        .attempts
        .iter()
        .map(|a| {
            vec![
                a.attempt.to_string(),
                esc(&a.target),
                esc(&a.worker_name),
                ago(Some(a.assigned_ms)),
            ]
        })
        .collect();
    let artifacts: Vec<Vec<String>> = job
        .artifacts
        .iter()
        .filter(|a| !a.hidden)
        .map(|a| {
            vec![
                esc(&a.name),
                esc(&a.target),
                format!("{} bytes", a.size),
                format!(
                    "<span class=\"mono\">{}…</span>",
                    esc(&a.sha256[..a.sha256.len().min(12)])
                ),
            ]
        })
        .collect();
    let main = format!(
        "<p class=\"mono muted\">{}</p><div class=\"actions\">{actions}</div><dl class=\"facts\">{facts}</dl>\
         <section><h2>Log <span id=\"live\" class=\"badge wait\">connecting</span></h2>\
         <pre id=\"log\" data-job=\"{}\" aria-live=\"polite\"></pre></section>\
         <div class=\"grid\"><section><h2>Attempts</h2>{}</section><section><h2>Artifacts</h2><div id=\"artifacts\">{}</div></section></div>",
        esc(&s.job_id),
        esc(&s.job_id),
        table(&["#", "Queue", "Worker", "Assigned"], &attempts, "Not dispatched yet."),
        table(&["Name", "Target", "Size", "SHA-256"], &artifacts, "No artifacts yet."),
    );
    page_response(StatusCode::OK, &layout("Build", "Builds", &op.csrf, &main))
}

/// `POST /admin/builds/{job_id}/cancel|requeue`.
pub async fn job_action(
    State(state): State<AppState>,
    op: Operator,
    Path((job_id, act)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if !op.sent(&Form::parse(&body)) {
        return Operator::expired();
    }
    let back = format!("/admin/builds/{}", seg(&job_id));
    let done = match act.as_str() {
        "cancel" => admin::actions::cancel_job(State(state), Admin, Path(job_id))
            .await
            .map(|_| ()),
        "requeue" => admin::actions::requeue_job(State(state), Admin, Path(job_id))
            .await
            .map(|_| ()),
        _ => Err(ApiError::not_found("Unknown action")),
    };
    match done {
        Ok(()) => Redirect::to(&back).into_response(),
        Err(e) => failed(&op, "Build", &e),
    }
}
