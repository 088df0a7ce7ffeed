//! The web app's page, scripts (ES modules, one per concern) and style sheet, embedded in the
//! binary: nothing is fetched from anywhere else, and the Content-Security-Policy the API
//! sends allows nothing else.

use crate::api::ApiState;
use axum::Router;
use axum::http::header;
use axum::routing::get;

/// Each file served: its path, content type and bytes.
const FILES: [(&str, &str, &str); 7] = [
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../../web/index.html"),
    ),
    (
        "/assets/app.css",
        "text/css; charset=utf-8",
        include_str!("../../web/app.css"),
    ),
    (
        "/assets/js/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/js/app.js"),
    ),
    (
        "/assets/js/core.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/js/core.js"),
    ),
    (
        "/assets/js/record.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/js/record.js"),
    ),
    (
        "/assets/js/patient.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/js/patient.js"),
    ),
    (
        "/assets/js/professional.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/js/professional.js"),
    ),
];

pub(super) fn routes() -> Router<ApiState> {
    FILES.iter().fold(Router::new(), |r, &(path, kind, body)| {
        r.route(
            path,
            get(move || async move { ([(header::CONTENT_TYPE, kind)], body) }),
        )
    })
}
