//! HTML building blocks of the dashboard: escaping, the page layout, tables, badges, and the
//! `application/x-www-form-urlencoded` bodies of its forms. Every value from the database goes
//! through [`esc`].

use std::fmt::Write as _;

use axum::{
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};
use shared::clock::now_ms;

/// Escape text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encode a path segment.
pub fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A page with no-store caching and a strict content security policy (scripts and styles only
/// from `/admin/static`; the live log's WebSocket to this origin).
pub fn page_response(status: StatusCode, body: &str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self' ws: wss:; frame-ancestors 'none'; form-action 'self'",
            ),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        body.to_owned(),
    )
        .into_response()
}

/// The layout around a page's `main`.
pub fn layout(title: &str, active: &str, csrf: &str, main: &str) -> String {
    let nav = [
        ("Overview", "/admin"),
        ("Builds", "/admin/builds"),
        ("Workers", "/admin/workers"),
    ]
    .iter()
    .map(|(name, href)| {
        let class = if *name == active {
            " class=\"active\""
        } else {
            ""
        };
        format!("<a href=\"{href}\"{class}>{name}</a>")
    })
    .collect::<String>();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} · Perry Hub</title><link rel=\"stylesheet\" href=\"/admin/static/app.css\">\
         <script src=\"/admin/static/app.js\" defer></script></head><body>\
         <header><span class=\"brand\">Perry Hub</span><nav>{nav}</nav>\
         <form method=\"post\" action=\"/admin/logout\" class=\"logout\"><button>Sign out</button></form></header>\
         <main data-csrf=\"{csrf}\"><h1>{t}</h1>{main}</main></body></html>",
        t = esc(title),
        csrf = esc(csrf),
    )
}

/// The sign-in page.
pub fn login_page(error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Sign in · Perry Hub</title><link rel=\"stylesheet\" href=\"/admin/static/app.css\"></head>\
         <body class=\"login\"><form method=\"post\" action=\"/admin/login\" class=\"card\">\
         <h1>Perry Hub</h1><p class=\"muted\">Operators sign in with the admin secret.</p>{error}\
         <label for=\"secret\">Admin secret</label>\
         <input id=\"secret\" name=\"secret\" type=\"password\" autocomplete=\"current-password\" required autofocus>\
         <button type=\"submit\">Sign in</button></form></body></html>"
    )
}

/// A table; `rows` are already-escaped cells.
pub fn table(headers: &[&str], rows: &[Vec<String>], empty: &str) -> String {
    if rows.is_empty() {
        return format!("<p class=\"empty\">{}</p>", esc(empty));
    }
    let mut out = String::from("<table><thead><tr>");
    for h in headers {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for r in rows {
        out.push_str("<tr>");
        for c in r {
            let _ = write!(out, "<td>{c}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// A coloured state badge.
pub fn badge(state: &str) -> String {
    format!(
        "<span class=\"badge {cls}\" data-state=\"{s}\">{s}</span>",
        cls = match state {
            "completed" => "ok",
            "failed" => "bad",
            "cancelled" => "muted",
            "running" | "assigned" | "finishing" => "busy",
            _ => "wait",
        },
        s = esc(state)
    )
}

/// `12s ago`, `5m ago`, `3h ago`, `2d ago`; `-` without a time.
pub fn ago(ms: Option<i64>) -> String {
    let Some(ms) = ms else { return "-".into() };
    let s = (now_ms() - ms).max(0) / 1000;
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..86_400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

/// A small POST form with this session's token.
pub fn action(path: &str, label: &str, csrf: &str, class: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{}\" class=\"inline\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <button class=\"{class}\">{}</button></form>",
        esc(path),
        esc(csrf),
        esc(label)
    )
}

/// A decoded `application/x-www-form-urlencoded` body.
#[derive(Debug, Default)]
pub struct Form(Vec<(String, String)>);

impl Form {
    /// Decode (malformed escapes are kept as they are).
    pub fn parse(body: &[u8]) -> Self {
        let text = String::from_utf8_lossy(body);
        Self(
            text.split('&')
                .filter(|p| !p.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (decode(k), decode(v))
                })
                .collect(),
        )
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (
            bytes[i],
            bytes.get(i + 1).copied(),
            bytes.get(i + 2).copied(),
        ) {
            (b'+', _, _) => out.push(b' '),
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                let v = hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0);
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 2;
            }
            (b, _, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_forms_decode() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        let f = Form::parse(b"secret=a%2Bb+c%3D&csrf=t&bad=%zz&end=%4");
        assert_eq!(f.get("secret"), Some("a+b c="));
        assert_eq!(f.get("csrf"), Some("t"));
        assert_eq!(f.get("bad"), Some("%zz"));
        assert_eq!(f.get("end"), Some("%4"));
        assert_eq!(f.get("nope"), None);
        assert_eq!(seg("mac mini/1"), "mac%20mini%2F1");
    }
}
