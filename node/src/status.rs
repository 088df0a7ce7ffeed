//! The node's status document (`hearth status`, `GET /api/v1/status`): identity, whether the
//! daemon runs, and its network state, as JSON and in words. The daemon's API, the forwarding
//! client and the `status` command all show this one document.

use crate::home::NodeInfo;
use crate::live;
use serde_json::{Value, json};

/// The status document: identity, whether the daemon runs, and its network state.
pub fn status_json(info: &NodeInfo, api: Option<&str>, net: Option<&live::Status>) -> Value {
    match net {
        Some(st) => json!({
            "peer_id": info.peer_id,
            "role": info.role,
            "record_id": info.record_id,
            "running": true,
            "listen_addrs": st.listen_addrs,
            "api": api,
            "connected": st.connected,
            "connections": st.connections,
            "reachability": st.reachability,
            "known_peers": st.known,
            "sessions": st.sessions,
            "notify": st.notify,
        }),
        None => json!({
            "peer_id": info.peer_id,
            "role": info.role,
            "record_id": info.record_id,
            "running": false,
            "listen_addrs": [],
            "api": null,
            "connected": [],
            "connections": {},
            "reachability": "unknown",
            "known_peers": {},
            "sessions": [],
            "notify": null,
        }),
    }
}

/// The status document as text.
pub fn status_text(v: &Value) -> String {
    let mut s = String::new();
    for w in v["emergency_words"].as_array().into_iter().flatten() {
        s.push_str(w.as_str().unwrap_or_default());
        s.push('\n');
    }
    s.push_str(&format!(
        "peer id: {}\n",
        v["peer_id"].as_str().unwrap_or_default()
    ));
    if v["running"].as_bool() != Some(true) {
        s.push_str("daemon:  not running (start it with `hearth run`)");
        return s;
    }
    s.push_str(&format!(
        "api:     {}\n",
        v["api"].as_str().unwrap_or_default()
    ));
    for a in v["listen_addrs"].as_array().into_iter().flatten() {
        s.push_str(&format!("listen:  {}\n", a.as_str().unwrap_or_default()));
    }
    let connected: Vec<&str> = v["connected"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    s.push_str(&format!("connected peers: {}\n", connected.len()));
    for c in connected {
        let via: Vec<&str> = v["connections"][c]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if via.is_empty() {
            s.push_str(&format!("  {c}\n"));
        } else {
            s.push_str(&format!("  {c} via {}\n", via.join(", ")));
        }
    }
    if let Some(r) = v["reachability"].as_str() {
        s.push_str(&format!("reachability: {r}\n"));
    }
    if let Some(known) = v["known_peers"].as_object() {
        for (p, k) in known {
            if let Some(e) = k["last_error"].as_str() {
                s.push_str(&format!(
                    "  known {p}: {} failed dials ({e})\n",
                    k["failures"]
                ));
            }
        }
    }
    for g in v["grants"].as_array().into_iter().flatten() {
        s.push_str(&format!(
            "grant {} on record {}: {}\n",
            g["id"].as_str().unwrap_or_default(),
            g["record"].as_str().unwrap_or_default(),
            g["status"].as_str().unwrap_or_default()
        ));
    }
    for sess in v["sessions"].as_array().into_iter().flatten() {
        let state = if sess["in_sync"].as_bool() == Some(true) {
            "in sync".to_string()
        } else if let Some(e) = sess["error"].as_str() {
            format!("failed: {e}")
        } else {
            let behind: u64 = sess["report"]["sections"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|x| x["behind"].as_u64().unwrap_or(0))
                .sum();
            format!("{behind} bundles behind")
        };
        s.push_str(&format!(
            "record {} with {}: {state}\n",
            sess["record"].as_str().unwrap_or_default(),
            sess["peer"].as_str().unwrap_or_default()
        ));
        for sec in sess["report"]["sections"].as_array().into_iter().flatten() {
            s.push_str(&format!(
                "    section {}: {} behind, {} ahead\n",
                sec["name"]
                    .as_str()
                    .or(sec["section"].as_str())
                    .unwrap_or_default(),
                sec["behind"],
                sec["ahead"]
            ));
        }
    }
    s.trim_end().to_string()
}
