//! The workers page, with drain and undrain.

use axum::{
    body::Bytes,
    extract::{Path, State},
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

/// `GET /admin/workers`: every connected worker with drain and undrain.
pub async fn workers(State(state): State<AppState>, op: Operator) -> Response {
    let listed = match admin::list_workers(State(state.clone()), Admin).await {
        Ok(w) => w.0,
        Err(e) => return failed(&op, "Workers", &e),
    };
    let rows: Vec<Vec<String>> = listed
        .workers
        .iter()
        .map(|w| {
            let path = format!("/admin/workers/{}", seg(&w.name));
            let button = if w.draining {
                action(&format!("{path}/undrain"), "Undrain", &op.csrf, "")
            } else {
                action(&format!("{path}/drain"), "Drain", &op.csrf, "danger")
            };
            let jobs = w
                .jobs
                .iter()
                .map(|j| {
                    format!(
                        "<a href=\"/admin/builds/{}\" class=\"mono\">{}</a>",
                        seg(j),
                        esc(&j[..j.len().min(8)])
                    )
                })
                .collect::<Vec<_>>()
                .join(" ");
            vec![
                format!("<span class=\"worker-name\">{}</span>", esc(&w.name)),
                esc(w.capabilities.trim_matches(',')),
                esc(&w.perry_version),
                format!("{}/{}", w.jobs.len(), w.slots),
                if jobs.is_empty() { "-".into() } else { jobs },
                if w.draining {
                    badge("draining")
                } else {
                    badge("ready")
                },
                ago(Some(w.last_seen_ms)),
                button,
            ]
        })
        .collect();
    let connected: Vec<&str> = listed.workers.iter().map(|w| w.name.as_str()).collect();
    let offline: Vec<String> = listed
        .drained
        .iter()
        .filter(|n| !connected.contains(&n.as_str()))
        .map(|n| {
            format!(
                "<li>{} {}</li>",
                esc(n),
                action(
                    &format!("/admin/workers/{}/undrain", seg(n)),
                    "Undrain",
                    &op.csrf,
                    ""
                )
            )
        })
        .collect();
    let offline = if offline.is_empty() {
        String::new()
    } else {
        format!(
            "<section><h2>Drained, not connected</h2><ul>{}</ul></section>",
            offline.concat()
        )
    };
    let main = format!(
        "<p class=\"muted\">Expected worker version: {}. A drained worker finishes what it holds and is given nothing new.</p>{}{offline}",
        esc(if listed.expected_version.is_empty() { "any" } else { &listed.expected_version }),
        table(&["Worker", "Capabilities", "Version", "Jobs", "Holding", "State", "Last seen", ""], &rows, "No worker is connected."),
    );
    page_response(
        StatusCode::OK,
        &layout(
            "Workers",
            "Workers",
            &op.csrf,
            &format!("<div data-refresh=\"10\">{main}</div>"),
        ),
    )
}

/// `POST /admin/workers/{name}/drain|undrain`.
pub async fn worker_action(
    State(state): State<AppState>,
    op: Operator,
    Path((name, act)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if !op.sent(&Form::parse(&body)) {
        return Operator::expired();
    }
    let done = match act.as_str() {
        "drain" => admin::fleet::drain(State(state), Admin, Path(name))
            .await
            .map(|_| ()),
        "undrain" => admin::fleet::undrain(State(state), Admin, Path(name))
            .await
            .map(|_| ()),
        _ => Err(ApiError::not_found("Unknown action")),
    };
    match done {
        Ok(()) => Redirect::to("/admin/workers").into_response(),
        Err(e) => failed(&op, "Workers", &e),
    }
}
