//! The dashboard's overview and builds list, each built from the admin API's own handlers (the
//! same queries and checks). The build page is in [`super::build`], workers in
//! [`super::workers`].

use std::collections::HashMap;

use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::Response,
};
use shared::{clock::now_ms, http::ApiError};

use super::{
    html::{ago, badge, esc, layout, page_response, seg, table},
    Operator,
};
use crate::{access::Admin, admin, AppState};

pub(super) fn failed(op: &Operator, title: &str, e: &ApiError) -> Response {
    let main = format!(
        "<p class=\"error\" role=\"alert\">{}: {}</p>",
        esc(e.code.as_str()),
        esc(&e.message)
    );
    page_response(e.status(), &layout(title, "", &op.csrf, &main))
}

/// `GET /admin`: queues, workers, the last hour's builds and recent failures.
pub async fn overview(State(state): State<AppState>, op: Operator) -> Response {
    let title = "Overview";
    let queues = match admin::fleet::queues(State(state.clone()), Admin).await {
        Ok(q) => q.0.queues,
        Err(e) => return failed(&op, title, &e),
    };
    let workers = match admin::list_workers(State(state.clone()), Admin).await {
        Ok(w) => w.0,
        Err(e) => return failed(&op, title, &e),
    };
    let hour: Vec<(String, i64)> = match sqlx::query_as(
        "SELECT state, COUNT(*) FROM jobs WHERE created_ms >= ? GROUP BY state ORDER BY state",
    )
    .bind(now_ms() - 3_600_000)
    .fetch_all(&state.deps.pool)
    .await
    {
        Ok(rows) => rows,
        Err(e) => return failed(&op, title, &ApiError::from(e)),
    };
    let failures = match recent(&state, "failed", 8).await {
        Ok(j) => j,
        Err(e) => return failed(&op, title, &e),
    };
    let busy = workers.workers.iter().filter(|w| w.busy).count();
    let total: i64 = hour.iter().map(|(_, n)| n).sum();
    let failed_hour = hour
        .iter()
        .find(|(s, _)| s == "failed")
        .map_or(0, |(_, n)| *n);
    let waiting: i64 = queues.iter().map(|q| q.queued).sum();
    let tiles = format!(
        "<section class=\"tiles\">{}{}{}{}</section>",
        tile("Queued", &waiting.to_string(), "queued"),
        tile(
            "Workers",
            &format!("{} ({busy} busy)", workers.workers.len()),
            "workers"
        ),
        tile("Builds, last hour", &total.to_string(), "builds-hour"),
        tile("Failed, last hour", &failed_hour.to_string(), "failed-hour"),
    );
    let queue_rows: Vec<Vec<String>> = queues
        .iter()
        .filter(|q| q.queued > 0 || q.held > 0 || q.workers > 0)
        .map(|q| {
            vec![
                esc(&q.target),
                q.queued.to_string(),
                q.held.to_string(),
                q.oldest_wait_secs
                    .map_or_else(|| "-".into(), |s| format!("{}s", s.round())),
                q.workers.to_string(),
            ]
        })
        .collect();
    let worker_rows: Vec<Vec<String>> = workers
        .workers
        .iter()
        .map(|w| {
            vec![
                format!("<a href=\"/admin/workers\">{}</a>", esc(&w.name)),
                esc(w.capabilities.trim_matches(',')),
                format!("{}/{}", w.jobs.len(), w.slots),
                if w.draining {
                    badge("draining")
                } else {
                    badge("ready")
                },
                ago(Some(w.last_seen_ms)),
            ]
        })
        .collect();
    let main = format!(
        "{tiles}<div class=\"grid\"><section><h2>Queues</h2>{}</section><section><h2>Workers</h2>{}</section></div>\
         <section><h2>Recent failures</h2>{}</section>",
        table(&["Target", "Queued", "Running", "Oldest wait", "Workers"], &queue_rows, "Every queue is empty and no worker is connected."),
        table(&["Worker", "Capabilities", "Jobs", "State", "Last seen"], &worker_rows, "No worker is connected."),
        job_table(&failures, "No failed builds."),
    );
    page_response(
        StatusCode::OK,
        &layout(
            title,
            "Overview",
            &op.csrf,
            &format!("<div data-refresh=\"10\">{main}</div>"),
        ),
    )
}

fn tile(label: &str, value: &str, id: &str) -> String {
    format!(
        "<div class=\"tile\" id=\"tile-{id}\"><span class=\"label\">{}</span><span class=\"value\">{}</span></div>",
        esc(label),
        esc(value)
    )
}

async fn recent(
    state: &AppState,
    job_state: &str,
    limit: u32,
) -> Result<Vec<admin::jobs::JobSummary>, ApiError> {
    let q: HashMap<String, String> = [
        ("state".to_owned(), job_state.to_owned()),
        ("limit".to_owned(), limit.to_string()),
    ]
    .into();
    Ok(
        admin::jobs::list_jobs(State(state.clone()), Admin, Query(q))
            .await?
            .0
            .jobs,
    )
}

pub(super) fn job_table(jobs: &[admin::jobs::JobSummary], empty: &str) -> String {
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            vec![
                format!(
                    "<a href=\"/admin/builds/{}\" class=\"mono\">{}</a>",
                    seg(&j.job_id),
                    esc(&j.job_id[..j.job_id.len().min(8)])
                ),
                badge(&j.state),
                esc(&j.stage_target),
                esc(&j.project),
                esc(j.worker_name.as_deref().unwrap_or("-")),
                ago(Some(j.created_ms)),
                format!(
                    "<span class=\"reason\">{}</span>",
                    esc(j.error.as_deref().unwrap_or(""))
                ),
            ]
        })
        .collect();
    table(
        &[
            "Build", "State", "Target", "Project", "Worker", "Created", "Error",
        ],
        &rows,
        empty,
    )
}

/// `GET /admin/builds?state=&target=&cursor=`.
pub async fn builds(
    State(state): State<AppState>,
    op: Operator,
    Query(mut query): Query<HashMap<String, String>>,
) -> Response {
    query.retain(|k, v| matches!(k.as_str(), "state" | "target" | "cursor") && !v.is_empty());
    query.insert("limit".into(), "50".into());
    let page = match admin::jobs::list_jobs(State(state.clone()), Admin, Query(query.clone())).await
    {
        Ok(p) => p.0,
        Err(e) => return failed(&op, "Builds", &e),
    };
    let current = |k: &str| query.get(k).map(String::as_str).unwrap_or("");
    let options = |values: &[&str], selected: &str| {
        values
            .iter()
            .map(|v| {
                let sel = if *v == selected { " selected" } else { "" };
                format!(
                    "<option value=\"{v}\"{sel}>{}</option>",
                    if v.is_empty() { "any" } else { v }
                )
            })
            .collect::<String>()
    };
    let filters = format!(
        "<form method=\"get\" class=\"filters\"><label>State <select name=\"state\">{}</select></label>\
         <label>Target <select name=\"target\">{}</select></label><button>Filter</button></form>",
        options(&["", "queued", "assigned", "running", "finishing", "completed", "failed", "cancelled"], current("state")),
        options(&[&[""][..], shared::queue::TARGETS].concat(), current("target")),
    );
    let more = page.next_cursor.as_ref().map_or_else(String::new, |c| {
        let mut q = format!("cursor={}", seg(c));
        for k in ["state", "target"] {
            if !current(k).is_empty() {
                q.push_str(&format!("&{k}={}", seg(current(k))));
            }
        }
        format!(
            "<p><a href=\"/admin/builds?{}\">Older builds →</a></p>",
            esc(&q)
        )
    });
    let main = format!(
        "{filters}{}{more}",
        job_table(&page.jobs, "No builds match.")
    );
    page_response(
        StatusCode::OK,
        &layout(
            "Builds",
            "Builds",
            &op.csrf,
            &format!("<div data-refresh=\"15\">{main}</div>"),
        ),
    )
}
