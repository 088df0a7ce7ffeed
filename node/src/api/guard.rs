//! The TCP listener's protections, on every request and every answer: the Host, Origin and
//! `Sec-Fetch-Site` checks and the bearer token ([`guard`]), JSON for every error
//! ([`json_errors`]), and the headers that keep the page to itself ([`hardened`]).

use super::{ApiState, Authed, error};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Routes on TCP that need no token: the web UI's page and assets (they hold nothing of the
/// node), the OpenAPI document, the login itself, and `exec`, refused there to everyone.
fn public(method: &axum::http::Method, path: &str) -> bool {
    path == "/"
        || path.starts_with("/assets/")
        || path == "/api/openapi.json"
        || path == "/api/v1/exec"
        || (method == axum::http::Method::POST && path == "/api/v1/session")
}

/// The TCP listener's checks, on every request: the Host header; the Origin header, when a
/// browser sends one; `Sec-Fetch-Site`; then, but on `public` routes, a session's token (put
/// in the request as [`Authed`]) or, for `GET /api/v1/status` alone, the install's API token.
pub async fn guard(
    State(st): State<ApiState>,
    headers: HeaderMap,
    mut req: Request,
    next: Next,
) -> Response {
    let host_ok = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| st.inner.hosts.iter().any(|x| x == h));
    if !host_ok {
        return error(StatusCode::FORBIDDEN, "forbidden_host", "forbidden host");
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let ok = origin
            .to_str()
            .is_ok_and(|o| st.inner.origins.iter().any(|x| x == o));
        if !ok {
            return error(
                StatusCode::FORBIDDEN,
                "forbidden_origin",
                "forbidden origin",
            );
        }
    }
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            "cross-site requests are refused",
        );
    }
    if public(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    let token = bearer(&headers);
    if req.uri().path() == "/api/v1/status"
        && token.is_some_and(|t| constant_time_eq(t.as_bytes(), st.inner.token.as_bytes()))
    {
        return next.run(req).await;
    }
    match token.and_then(|t| st.inner.sessions.find(t)) {
        Some(keys) => {
            req.extensions_mut().insert(Authed(keys));
            next.run(req).await
        }
        None => {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "no session: run `hearth ui` on this computer and open the address it prints",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
            r
        }
    }
}

/// Makes every error answer JSON: axum's own refusals (a body that is not JSON, too large,
/// malformed, a wrong method) come as plain text.
pub(super) async fn json_errors(res: Response) -> Response {
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return res;
    }
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "not_json",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::NOT_FOUND => "not_found",
        s if s.is_server_error() => "failed",
        _ => "invalid",
    };
    let text = axum::body::to_bytes(res.into_body(), 2048)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text
    };
    error(status, code, &message)
}

/// The headers every answer on TCP carries: the page may load only its own scripts, styles
/// and images, never be framed, never leak its address, never be cached.
pub(super) async fn hardened(mut res: Response) -> Response {
    use axum::http::HeaderValue;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    res
}
