//! The status page: one HTML file and one script, compiled into the
//! binary (no CDN, no fonts, works offline). The script reads
//! [`super::status::PATH`] every [`REFRESH_MS`] ms and redraws.

use axum::http::header;
use axum::response::IntoResponse;

pub const PATH: &str = "/status";
pub const SCRIPT_PATH: &str = "/status.js";
/// How often the page refreshes itself.
pub const REFRESH_MS: u32 = 2000;

const HTML: &str = include_str!("status.html");
const SCRIPT: &str = include_str!("status.js");

const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
                   style-src 'unsafe-inline'; img-src 'self' data:";

pub async fn html() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        HTML,
    )
}

pub async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT.replace("__REFRESH_MS__", &REFRESH_MS.to_string()),
    )
}
