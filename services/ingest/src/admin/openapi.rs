//! The operator API's part of the OpenAPI document (issue 17).

use serde_json::{json, Map, Value};

fn admin_op(
    summary: &str,
    params: &[Value],
    body: Option<&str>,
    schema: &str,
    errors: &[u16],
) -> Value {
    let mut responses = Map::new();
    responses.insert(
        "200".into(),
        json!({"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}}),
    );
    for status in [403].iter().chain(errors) {
        let codes = match status {
            400 => "BAD_REQUEST",
            403 => "FORBIDDEN",
            404 => "NOT_FOUND or JOB_NOT_FOUND",
            409 => "CONFLICT",
            _ => "UNAVAILABLE",
        };
        responses.insert(
            status.to_string(),
            json!({"description": codes, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}),
        );
    }
    let mut o = json!({"summary": summary, "parameters": params, "responses": responses, "security": [{"adminSecret": []}]});
    if let Some(b) = body {
        o["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{b}")}}}});
    }
    o
}

fn path_param(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
}

fn query(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": {"type": "string"}})
}

/// Every admin path of issue 17.
pub fn paths() -> Map<String, Value> {
    let job = || path_param("job_id");
    let limit = || query("limit", "Page size");
    let cursor = || query("cursor", "next_cursor of the previous page");
    let v = json!({
        "/api/v1/admin/jobs": {"get": admin_op("Jobs, newest first, with filters and keyset paging", &[
            query("state", "Comma-separated states"), query("target", "Asked-for or stage target"),
            query("license_id", "Licence id"), query("account_id", "Account id"),
            query("since_ms", "Created at or after (epoch ms)"), query("until_ms", "Created before (epoch ms)"),
            limit(), cursor()], None, "AdminJobPage", &[400])},
        "/api/v1/admin/jobs/{job_id}": {"get": admin_op("One job with its attempts, events and artifacts",
            &[job(), query("after_seq", "Events after this sequence number"), limit()], None, "AdminJobDetail", &[400, 404])},
        "/api/v1/admin/jobs/{job_id}/cancel": {"post": admin_op("Cancel a job (a held one is flagged and its worker told)", &[job()], None, "AdminJobAction", &[404, 409])},
        "/api/v1/admin/jobs/{job_id}/requeue": {"post": admin_op("Run a failed job again from the same input", &[job()], None, "AdminJobAction", &[404, 409])},
        "/api/v1/admin/workers/{name}/drain": {"post": admin_op("Drain a worker: it finishes what it holds and takes nothing new", &[path_param("name")], None, "AdminDrain", &[400])},
        "/api/v1/admin/workers/{name}/undrain": {"post": admin_op("Give a drained worker jobs again", &[path_param("name")], None, "AdminDrain", &[400])},
        "/api/v1/admin/queues": {"get": admin_op("Queue depth and oldest waiting job per target", &[], None, "AdminQueues", &[])},
        "/api/v1/admin/outbox": {"get": admin_op("Outbox backlog, oldest unsent row and dead letters", &[], None, "AdminOutbox", &[])},
        "/api/v1/admin/outbox/replay": {"post": admin_op("Replay dead letters through the outbox", &[limit()], None, "AdminReplay", &[400, 503])},
        "/api/v1/admin/licenses": {"get": admin_op("Licences, newest first, with this month's publishes", &[query("tier", "free or pro"), query("account_id", "Account id"), limit(), cursor()], None, "AdminLicencePage", &[400])},
        "/api/v1/admin/accounts": {"get": admin_op("Accounts, newest first, with their licences and live API tokens", &[limit(), cursor()], None, "AdminAccountPage", &[400])},
        "/api/v1/admin/licenses/{id}": {"get": admin_op("One licence with usage, jobs per state and its account's API tokens", &[path_param("id")], None, "AdminLicenceDetail", &[400, 404])},
        "/api/v1/admin/licenses/{id}/tier": {"post": admin_op("Change a licence's tier", &[path_param("id")], Some("AdminTierRequest"), "AdminTier", &[400, 404])},
        "/api/v1/admin/tokens/{id}/revoke": {"post": admin_op("Revoke an API token", &[path_param("id")], None, "AdminToken", &[400, 404])}
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Their schemas (the main fields; every answer is a JSON object).
pub fn schemas() -> Map<String, Value> {
    let o = |props: Value| json!({"type": "object", "properties": props});
    let s = json!({"type": "string"});
    let i = json!({"type": "integer"});
    let ni = json!({"type": "integer", "nullable": true});
    let b = json!({"type": "boolean"});
    let arr = |item: Value| json!({"type": "array", "items": item});
    let job = o(
        json!({"job_id": s, "state": s, "target": s, "stage_target": s, "stage": i, "project": s,
        "license_id": i, "account_id": s, "attempt": i, "retries": i, "worker_name": s, "created_ms": i,
        "assigned_ms": ni, "finished_ms": ni, "error": s}),
    );
    let v = json!({
        "AdminJobPage": o(json!({"jobs": arr(job.clone()), "next_cursor": s})),
        "AdminJobDetail": o(json!({"job_id": s, "state": s, "cancel_requested": b,
            "attempts": arr(o(json!({"attempt": i, "stage": i, "target": s, "worker_name": s, "assigned_ms": i}))),
            "events": arr(o(json!({"seq": i, "kind": s, "created_ms": i, "payload": {"type": "object"}}))),
            "artifacts": arr(o(json!({"id": s, "attempt": i, "name": s, "target": s, "size": i, "sha256": s, "hidden": b, "expires_ms": i})))})),
        "AdminJobAction": o(json!({"job_id": s, "result": {"type": "string", "enum": ["cancelled", "cancel_requested", "requeued"]}, "state": s})),
        "AdminDrain": o(json!({"name": s, "draining": b, "connected": i, "jobs": i})),
        "AdminQueues": o(json!({"queues": arr(o(json!({"target": s, "queued": i, "held": i, "oldest_queued_ms": ni, "oldest_wait_secs": {"type": "number", "nullable": true}, "workers": i})))})),
        "AdminOutbox": o(json!({"backlog": i, "oldest_unsent_ms": ni, "oldest_unsent_age_secs": {"type": "number", "nullable": true}, "dead_lettered": ni})),
        "AdminReplay": o(json!({"replayed": i, "kept": i})),
        "AdminLicencePage": o(json!({"licenses": arr(o(json!({"id": i, "tier": s, "account_id": s, "github_username": s, "device_bound": b, "bound_project": s, "created_ms": i, "publishes_this_period": i}))), "next_cursor": s})),
        "AdminLicenceDetail": o(json!({"id": i, "tier": s, "usage": arr(o(json!({"period": s, "publishes": i}))), "jobs": {"type": "object", "additionalProperties": i}, "tokens": arr(o(json!({"id": i, "created_ms": i, "revoked_ms": ni})))})),
        "AdminAccountPage": o(json!({"accounts": arr(o(json!({"id": s, "github_username": s, "email": s, "tier": s, "has_payment_method": b, "created_ms": i, "deleted_ms": ni, "licenses": i, "active_tokens": i}))), "next_cursor": s})),
        "AdminTierRequest": {"type": "object", "required": ["tier"], "properties": {"tier": {"type": "string", "enum": ["free", "pro"]}}},
        "AdminTier": o(json!({"id": i, "tier": s})),
        "AdminToken": o(json!({"id": i, "created_ms": i, "revoked_ms": ni}))
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
