//! `GET /api/v1/openapi.json`: an OpenAPI 3.0 document of every ingest route, written by hand
//! from PROTOCOL.md (the wire contract is fixed, so the document changes only with it).

use axum::Json;
use serde_json::{json, Value};

/// `GET /api/v1/openapi.json`.
pub async fn get_document() -> Json<Value> {
    Json(document())
}

/// The document.
pub fn document() -> Value {
    let mut doc = base_document();
    if let Some(paths) = doc["paths"].as_object_mut() {
        paths.extend(crate::admin::openapi::paths());
    }
    if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
        schemas.extend(crate::admin::openapi::schemas());
    }
    doc
}

fn base_document() -> Value {
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Perry Hub ingest API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every write from outside the hub: build submissions, worker artifact uploads, licences, accounts and admin. Errors use the envelope {\"error\":{\"code\",\"message\"}} with the stable codes of PROTOCOL.md §2.2. Success is always 200."
        },
        "paths": {
            "/api/v1/status": {"get": op("Hub status (public)", &[], None, ok("Status"), &[])},
            "/api/v1/license/register": {"post": op(
                "Register a free, device-bound licence (throttled per client address and device id)",
                &[], Some(json_body("RegisterRequest", false)), ok("RegisterResponse"), &[400, 429])},
            "/api/v1/license/verify": {"post": op(
                "Check a licence key", &[], Some(json_body("VerifyRequest", true)), ok("VerifyResponse"), &[400])},
            "/api/v1/account": {"get": secured(op(
                "The caller's account and usage", &[], None, ok("AccountResponse"), &[401]), "apiToken")},
            "/api/v1/account/create": {"post": secured(op(
                "Create an account (or mint another API token for an existing one)",
                &[], Some(json_body("AccountCreateRequest", true)), ok("AccountCreateResponse"), &[400, 403]), "adminSecret")},
            "/api/v1/account/update": {"post": secured(op(
                "Update an account's tier and billing; linked licences follow the tier",
                &[], Some(json_body("AccountUpdateRequest", true)), ok("OkResponse"), &[400, 403, 404]), "adminSecret")},
            "/api/v1/admin/update-perry": {"post": secured(op(
                "Persist the expected worker version and ask idle workers to update",
                &[], Some(json_body("UpdatePerryRequest", false)), ok("UpdatePerryResponse"), &[400, 403]), "adminSecret")},
            "/api/v1/admin/workers": {"get": secured(op(
                "Connected workers", &[], None, ok("AdminWorkersResponse"), &[403]), "adminSecret")},
            "/api/v1/build": {"post": build()},
            "/api/v1/artifact/upload/{job_id}": {"post": upload()},
            "/api/v1/jobs/{job_id}": {"get": secured(op(
                "A job's state and visible artifacts (fresh download links); Bearer is the job's licence key or an API token of its account",
                &[job_id()], None, ok("JobStatus"), &[401, 404]), "apiToken")},
            "/api/v1/openapi.json": {"get": op("This document", &[], None, json!({"description": "OpenAPI 3 document", "content": {"application/json": {"schema": {"type": "object"}}}}), &[])}
        },
        "components": {
            "securitySchemes": {
                "apiToken": {"type": "http", "scheme": "bearer", "description": "An API token (or, for GET /jobs, the job's licence key)"},
                "adminSecret": {"type": "http", "scheme": "bearer", "description": "PERRY_HUB_ADMIN_SECRET"},
                "jobToken": {"type": "http", "scheme": "bearer", "description": "job_assign.auth_token of the current attempt"}
            },
            "schemas": schemas()
        }
    })
}

fn op(
    summary: &str,
    parameters: &[Value],
    body: Option<Value>,
    success: Value,
    errors: &[u16],
) -> Value {
    let mut responses = serde_json::Map::new();
    responses.insert("200".into(), success);
    for status in errors {
        responses.insert(status.to_string(), error_response(*status));
    }
    let mut o = json!({"summary": summary, "parameters": parameters, "responses": responses});
    if let (Some(body), Some(map)) = (body, o.as_object_mut()) {
        map.insert("requestBody".into(), body);
    }
    o
}

fn secured(mut operation: Value, scheme: &str) -> Value {
    if let Some(map) = operation.as_object_mut() {
        let mut requirement = serde_json::Map::new();
        requirement.insert(scheme.to_owned(), json!([]));
        map.insert("security".into(), json!([requirement]));
    }
    operation
}

fn ok(schema: &str) -> Value {
    json!({"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

fn json_body(schema: &str, required: bool) -> Value {
    json!({"required": required, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

fn error_response(status: u16) -> Value {
    let codes = match status {
        400 => "BAD_REQUEST",
        401 => "AUTH_REQUIRED, AUTH_INVALID or LICENSE_INVALID",
        403 => "FORBIDDEN or ACCOUNT_REQUIRED (with login_url)",
        404 => "NOT_FOUND or JOB_NOT_FOUND",
        409 => "JOB_NOT_RUNNING or CONFLICT",
        413 => "UPLOAD_TOO_LARGE",
        429 => "PUBLISH_LIMIT_REACHED (with usage) or RATE_LIMITED",
        _ => "INTERNAL_ERROR",
    };
    json!({"description": codes, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}})
}

fn header(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "header", "required": false, "description": description, "schema": {"type": "string"}})
}

fn job_id() -> Value {
    json!({"name": "job_id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}})
}

fn build() -> Value {
    let parameters = [
        header(
            "Idempotency-Key",
            "Up to 255 visible ASCII characters, unique per licence: a retry answers the first job",
        ),
        header(
            "X-Perry-Manifest",
            "Raw form only: the manifest, JSON or base64 of JSON",
        ),
        header(
            "X-Perry-Credentials",
            "Raw form only: the credentials object, JSON or base64 of JSON",
        ),
        header(
            "X-Perry-License-Key",
            "Raw form only: the licence key (or use Authorization: Bearer <api token>)",
        ),
        header(
            "X-Tarball-Sha256",
            "Raw form only: hex SHA-256 of the body, verified",
        ),
    ];
    let form = json!({
        "type": "object",
        "required": ["manifest"],
        "properties": {
            "manifest": {"type": "string", "description": "JSON: app_name, bundle_id (else name), version, entry, targets (exactly one of macos ios visionos watchos tvos android linux windows web)"},
            "credentials": {"type": "string", "description": "JSON object of nullable signing secrets (default {})"},
            "tarball_b64": {"type": "string", "description": "The project tarball, one line of standard base64"},
            "tarball": {"type": "string", "format": "binary", "description": "The project tarball as raw bytes (instead of tarball_b64)"},
            "license_key": {"type": "string", "description": "Ignored when an API token is sent as Bearer"}
        }
    });
    let body = json!({"required": true, "content": {
        "multipart/form-data": {"schema": form},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
    }});
    secured(
        op(
            "Submit a build: checks licence, quota and rate limit, stores the tarball and queues one job",
            &parameters,
            Some(body),
            ok("BuildResponse"),
            &[400, 401, 403, 413, 429],
        ),
        "apiToken",
    )
}

fn upload() -> Value {
    let parameters = [
        job_id(),
        header("x-artifact-name", "User-visible file name (default 'artifact'); no '/', '\\', control characters, '.' or '..'; at most 255 bytes"),
        header("x-artifact-sha256", "Hex SHA-256 of the decoded bytes; verified"),
        header("x-artifact-target", "linux, android, tvos, windows, ios-sign, macos-sign, ..., or a hidden *-precompiled bundle"),
    ];
    let body = json!({"required": true, "content": {
        "text/plain": {"schema": {"type": "string", "description": "One line of standard base64"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
    }});
    secured(
        op(
            "Upload an artifact of the current attempt",
            &parameters,
            Some(body),
            ok("ArtifactUploadResponse"),
            &[400, 403, 404, 409, 413],
        ),
        "jobToken",
    )
}

fn object(required: &[&str], properties: Value) -> Value {
    let mut o = json!({"type": "object", "required": required});
    o["properties"] = properties;
    o
}

fn schemas() -> Value {
    let s = json!({"type": "string"});
    let ns = json!({"type": "string", "nullable": true});
    let i = json!({"type": "integer", "minimum": 0});
    let b = json!({"type": "boolean"});
    let tier = json!({"type": "string", "enum": ["free", "pro"]});
    let strings = json!({"type": "array", "items": {"type": "string"}});
    json!({
        "ErrorBody": object(&["error"], json!({"error": object(&["code", "message"], json!({
            "code": s, "message": s,
            "usage": object(&["publishes", "limit", "period"], json!({"publishes": i, "limit": i, "period": s})),
            "login_url": s}))})),
        "Status": object(&["status", "queue_length", "connected_workers", "perry_version", "expected_perry_version", "supported_targets"], json!({
            "status": s, "queue_length": i, "connected_workers": i, "perry_version": s, "expected_perry_version": s, "supported_targets": strings})),
        "RegisterRequest": object(&[], json!({"github_username": s, "device_id": s})),
        "RegisterResponse": object(&["license_key", "tier", "platforms"], json!({"license_key": s, "tier": tier, "platforms": strings})),
        "VerifyRequest": object(&["license_key"], json!({"license_key": s})),
        "VerifyResponse": object(&["valid", "tier", "platforms"], json!({"valid": b, "tier": {"type": "string", "nullable": true}, "platforms": {"type": "array", "nullable": true, "items": s}})),
        "AccountResponse": object(&["id", "github_username", "email", "tier", "has_payment_method", "usage"], json!({
            "id": s, "github_username": s, "email": ns, "tier": tier, "has_payment_method": b,
            "usage": object(&["publishes", "publish_limit", "deep_verifies", "verify_limit", "period"], json!({
                "publishes": i, "publish_limit": i, "deep_verifies": i, "verify_limit": i, "period": s}))})),
        "AccountCreateRequest": object(&["github_id", "github_username"], json!({
            "github_id": {"oneOf": [{"type": "string"}, {"type": "integer"}]}, "github_username": s, "email": s})),
        "AccountCreateResponse": object(&["id", "api_token", "github_username", "tier", "created"], json!({
            "id": s, "api_token": s, "github_username": s, "tier": tier, "created": b})),
        "AccountUpdateRequest": object(&["account_id"], json!({
            "account_id": s, "tier": tier, "polar_customer_id": s, "polar_subscription_id": s, "has_payment_method": b})),
        "OkResponse": object(&["ok"], json!({"ok": b})),
        "UpdatePerryRequest": object(&[], json!({"expected_version": s})),
        "UpdatePerryResponse": object(&["ok", "workers_notified", "expected_version", "workers"], json!({
            "ok": b, "workers_notified": i, "expected_version": s,
            "workers": {"type": "array", "items": object(&["name", "perry_version", "busy"], json!({"name": s, "perry_version": s, "busy": b}))}})),
        "AdminWorkersResponse": object(&["expected_version", "workers"], json!({
            "expected_version": s, "drained": strings,
            "workers": {"type": "array", "items": object(&["name", "perry_version", "capabilities", "busy"], json!({
                "name": s, "perry_version": s, "capabilities": s, "busy": b, "slots": i, "jobs": strings,
                "connected_ms": i, "last_seen_ms": i, "draining": b}))}})),
        "BuildResponse": object(&["job_id", "ws_url", "position"], json!({"job_id": s, "ws_url": s, "position": i})),
        "ArtifactUploadResponse": object(&["token", "download_url", "size"], json!({"token": s, "download_url": s, "size": i})),
        "JobStatus": object(&["job_id", "state", "target", "stage_target", "stage", "attempts", "position", "created_ms", "artifacts"], json!({
            "job_id": s, "state": {"type": "string", "enum": ["queued", "assigned", "running", "finishing", "completed", "failed", "cancelled"]},
            "target": s, "stage_target": s, "stage": i, "attempts": i, "position": i, "created_ms": i,
            "finished_ms": {"type": "integer", "nullable": true}, "error": ns,
            "artifacts": {"type": "array", "items": object(&["name", "target", "size", "sha256"], json!({
                "name": s, "target": s, "size": i, "sha256": s, "download_url": ns, "expires_in_secs": {"type": "integer", "nullable": true}}))}}))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_and_every_reference_resolves() {
        let doc = document();
        for path in [
            "/api/v1/status",
            "/api/v1/license/register",
            "/api/v1/license/verify",
            "/api/v1/account",
            "/api/v1/account/create",
            "/api/v1/account/update",
            "/api/v1/admin/update-perry",
            "/api/v1/admin/workers",
            "/api/v1/build",
            "/api/v1/artifact/upload/{job_id}",
            "/api/v1/jobs/{job_id}",
            "/api/v1/openapi.json",
        ] {
            assert!(doc["paths"].get(path).is_some(), "{path} missing");
        }
        let text = doc.to_string();
        for reference in text.split("\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap_or_default();
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "dangling $ref {name}"
            );
        }
    }
}
