//! A web UI session against a running daemon, as the browser gets one: `hearth ui --json`
//! prints the one-time login address, `POST /api/v1/session` spends its code for a token.

use super::{Daemon, hearth, json};
use hearth_node::client::request;
use serde_json::Value;
use std::path::Path;

/// A logged-in session on the daemon at `port`.
#[allow(dead_code)]
pub(crate) struct Web {
    /// The daemon's API port.
    pub(crate) port: u16,
    /// The address `hearth ui` printed, with its one-time code (unspent until [`Web::login`]).
    pub(crate) url: String,
    /// The session's token (empty before login).
    pub(crate) token: String,
    /// Who the session acts as (`me` of the login answer).
    pub(crate) me: Value,
}

#[allow(dead_code)]
impl Web {
    /// A fresh login address from `hearth ui` for the daemon of `home` (not spent).
    pub(crate) fn address(home: &Path, daemon: &Daemon) -> Web {
        let out = json(&hearth(home, &["ui", "--json"]));
        let url = out["url"].as_str().expect("url").to_string();
        assert!(
            url.starts_with(&format!("http://127.0.0.1:{}/#login=", daemon.port())),
            "{url}"
        );
        Web {
            port: daemon.port(),
            url,
            token: String::new(),
            me: Value::Null,
        }
    }

    /// The one-time code in the address.
    pub(crate) fn code(&self) -> &str {
        self.url.split("#login=").nth(1).expect("code")
    }

    /// A logged-in session for the daemon of `home`.
    pub(crate) fn login(home: &Path, daemon: &Daemon) -> Web {
        let mut w = Web::address(home, daemon);
        let body = serde_json::json!({"code": w.code()}).to_string();
        let (code, v) = w.raw("POST", "/api/v1/session", &[], Some(&body));
        assert_eq!(code, 200, "login: {v}");
        w.token = v["token"].as_str().expect("token").to_string();
        w.me = v["me"].clone();
        w
    }

    /// One request with exactly `headers` (no session added), and its status and JSON body
    /// (`Null` when the body is not JSON).
    pub(crate) fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> (u16, Value) {
        let mut h: Vec<(&str, &str)> = headers.to_vec();
        if body.is_some()
            && !h
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            h.push(("Content-Type", "application/json"));
        }
        let (code, bytes) =
            request(self.port, method, path, &h, body.map(str::as_bytes)).expect("request");
        (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// A request in this session.
    pub(crate) fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let auth = format!("Bearer {}", self.token);
        let text = body.map(Value::to_string);
        self.raw(method, path, &[("Authorization", &auth)], text.as_deref())
    }

    /// A GET that must succeed.
    #[track_caller]
    pub(crate) fn get(&self, path: &str) -> Value {
        let (code, v) = self.call("GET", path, None);
        assert_eq!(code, 200, "GET {path}: {v}");
        v
    }

    /// A POST that must succeed.
    #[track_caller]
    pub(crate) fn post(&self, path: &str, body: Value) -> Value {
        let (code, v) = self.call("POST", path, Some(&body));
        assert_eq!(code, 200, "POST {path}: {v}");
        v
    }
}
