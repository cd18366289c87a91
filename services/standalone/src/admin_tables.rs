//! Tables of `perry-hub admin` for people: aligned columns, times as ages, one line per row.

use serde_json::Value;

use crate::admin::AdminCommand;

/// Render the answer of `command` as text.
pub fn render(command: &AdminCommand, body: &Value) -> String {
    use AdminCommand as C;
    match command {
        C::Jobs { .. } => {
            let mut out = table(
                &[
                    "JOB", "STATE", "TARGET", "PROJECT", "LICENCE", "WORKER", "AGE", "ERROR",
                ],
                rows(&body["jobs"], |j| {
                    vec![
                        text(&j["job_id"]),
                        text(&j["state"]),
                        text(&j["stage_target"]),
                        text(&j["project"]),
                        text(&j["license_id"]),
                        text(&j["worker_name"]),
                        age(&j["created_ms"]),
                        short(&text(&j["error"]), 40),
                    ]
                }),
            );
            if let Some(cursor) = body["next_cursor"].as_str() {
                out.push_str(&format!("more: --cursor {cursor}\n"));
            }
            out
        }
        C::Job { .. } => job(body),
        C::Cancel { .. } | C::Requeue { .. } => format!(
            "{}: {} (now {})\n",
            text(&body["job_id"]),
            text(&body["result"]),
            text(&body["state"])
        ),
        C::Workers => {
            let mut out = table(
                &[
                    "WORKER",
                    "CAPABILITIES",
                    "VERSION",
                    "SLOTS",
                    "JOBS",
                    "DRAINING",
                    "LAST SEEN",
                ],
                rows(&body["workers"], |w| {
                    let jobs = w["jobs"].as_array().map_or(0, Vec::len);
                    vec![
                        text(&w["name"]),
                        text(&w["capabilities"]).trim_matches(',').to_owned(),
                        text(&w["perry_version"]),
                        text(&w["slots"]),
                        format!("{jobs}"),
                        yes_no(&w["draining"]),
                        age(&w["last_seen_ms"]),
                    ]
                }),
            );
            let drained: Vec<String> = body["drained"]
                .as_array()
                .map(|a| a.iter().map(text).collect())
                .unwrap_or_default();
            if !drained.is_empty() {
                out.push_str(&format!("drained: {}\n", drained.join(", ")));
            }
            out
        }
        C::Drain { .. } | C::Undrain { .. } => format!(
            "{}: {} ({} connected, {} jobs still held)\n",
            text(&body["name"]),
            if body["draining"] == true {
                "drained"
            } else {
                "taking jobs"
            },
            text(&body["connected"]),
            text(&body["jobs"])
        ),
        C::Queues => table(
            &["TARGET", "QUEUED", "HELD", "OLDEST WAIT", "WORKERS"],
            rows(&body["queues"], |q| {
                vec![
                    text(&q["target"]),
                    text(&q["queued"]),
                    text(&q["held"]),
                    q["oldest_wait_secs"]
                        .as_f64()
                        .map_or_else(|| "-".into(), duration),
                    text(&q["workers"]),
                ]
            }),
        ),
        C::Outbox => format!(
            "backlog: {}\noldest unsent: {}\ndead letters: {}\n",
            text(&body["backlog"]),
            body["oldest_unsent_age_secs"]
                .as_f64()
                .map_or_else(|| "-".into(), duration),
            text(&body["dead_lettered"])
        ),
        C::Replay => format!(
            "replayed: {}\nkept (undecodable): {}\n",
            text(&body["replayed"]),
            text(&body["kept"])
        ),
        C::Licences { .. } => table(
            &[
                "ID",
                "TIER",
                "ACCOUNT",
                "USER",
                "DEVICE-BOUND",
                "PROJECT",
                "PUBLISHES",
                "AGE",
            ],
            rows(&body["licenses"], |l| {
                vec![
                    text(&l["id"]),
                    text(&l["tier"]),
                    text(&l["account_id"]),
                    text(&l["github_username"]),
                    yes_no(&l["device_bound"]),
                    text(&l["bound_project"]),
                    text(&l["publishes_this_period"]),
                    age(&l["created_ms"]),
                ]
            }),
        ),
        C::Accounts { .. } => table(
            &[
                "ACCOUNT", "USER", "EMAIL", "TIER", "LICENCES", "TOKENS", "AGE",
            ],
            rows(&body["accounts"], |a| {
                vec![
                    text(&a["id"]),
                    text(&a["github_username"]),
                    text(&a["email"]),
                    text(&a["tier"]),
                    text(&a["licenses"]),
                    text(&a["active_tokens"]),
                    age(&a["created_ms"]),
                ]
            }),
        ),
        C::Tier { .. } => format!("licence {}: {}\n", text(&body["id"]), text(&body["tier"])),
        C::RevokeToken { .. } => format!(
            "token {}: revoked {}\n",
            text(&body["id"]),
            age(&body["revoked_ms"])
        ),
    }
}

fn job(j: &Value) -> String {
    let mut out = format!(
        "job {}\nstate: {}\ntarget: {} (stage {}: {})\nproject: {}\nlicence: {}\ncreated: {} ago\n",
        text(&j["job_id"]),
        text(&j["state"]),
        text(&j["target"]),
        text(&j["stage"]),
        text(&j["stage_target"]),
        text(&j["project"]),
        text(&j["license_id"]),
        age(&j["created_ms"]),
    );
    if let Some(e) = j["error"].as_str() {
        out.push_str(&format!("error: {e}\n"));
    }
    out.push_str("\nattempts\n");
    out.push_str(&table(
        &["#", "STAGE", "TARGET", "WORKER", "ASSIGNED"],
        rows(&j["attempts"], |a| {
            vec![
                text(&a["attempt"]),
                text(&a["stage"]),
                text(&a["target"]),
                text(&a["worker_name"]),
                age(&a["assigned_ms"]),
            ]
        }),
    ));
    out.push_str("\nartifacts\n");
    out.push_str(&table(
        &["NAME", "TARGET", "SIZE", "ATTEMPT", "SHA-256"],
        rows(&j["artifacts"], |a| {
            vec![
                text(&a["name"]),
                text(&a["target"]),
                text(&a["size"]),
                text(&a["attempt"]),
                short(&text(&a["sha256"]), 16),
            ]
        }),
    ));
    let events = j["events"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    out.push_str(&format!("\nlast events (of {})\n", events.len()));
    for e in events.iter().rev().take(20).rev() {
        let payload = &e["payload"];
        let line = payload["message"]
            .as_str()
            .or_else(|| payload["frame"]["message"].as_str())
            .map_or_else(|| short(&payload.to_string(), 100), |m| short(m, 100));
        out.push_str(&format!(
            "{:>6} {:<14} {line}\n",
            text(&e["seq"]),
            text(&e["kind"])
        ));
    }
    out
}

fn rows(list: &Value, f: impl Fn(&Value) -> Vec<String>) -> Vec<Vec<String>> {
    list.as_array()
        .map(|a| a.iter().map(f).collect())
        .unwrap_or_default()
}

/// Left-aligned columns separated by two spaces.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.iter().map(|h| (*h).to_owned()).collect());
    if rows.is_empty() {
        out.push_str("(none)\n");
    }
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn yes_no(v: &Value) -> String {
    if v.as_bool() == Some(true) {
        "yes"
    } else {
        "no"
    }
    .into()
}

fn short(s: &str, max: usize) -> String {
    let one_line = s.replace('\n', " ");
    match one_line.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

fn age(ms: &Value) -> String {
    ms.as_i64().map_or_else(
        || "-".into(),
        |ms| duration((shared::clock::now_ms() - ms).max(0) as f64 / 1000.0),
    )
}

/// `42s`, `5m 3s`, `2h 10m`, `3d 4h`.
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_durations_read_naturally() {
        let t = table(
            &["A", "LONGER"],
            vec![vec!["xyz".into(), "1".into()], vec!["q".into(), "-".into()]],
        );
        assert_eq!(t, "A    LONGER\nxyz  1\nq    -\n");
        assert_eq!(table(&["A"], vec![]), "A\n(none)\n");
        assert_eq!(duration(42.0), "42s");
        assert_eq!(duration(303.0), "5m 3s");
        assert_eq!(duration(7800.0), "2h 10m");
        assert_eq!(duration(273_600.0), "3d 4h");
        assert_eq!(short("abcdef", 3), "abc…");
    }
}
