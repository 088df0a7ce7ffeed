//! Three homes in one temporary folder — a patient with notes and medications, a professional
//! and an organisation — for the grant and request flows.

#![allow(dead_code)]

use super::{Daemon, hearth, init, json, ok, stranger};
use hearth_core::grant;
use hearth_sync::protocol::{Message, SyncRequest, decode, encode};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Output;

/// Homes under one temporary folder, removed when dropped.
pub(crate) struct Homes {
    _tmp: tempfile::TempDir,
    pub(crate) root: PathBuf,
}

impl Homes {
    pub(crate) fn new() -> Homes {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        Homes { _tmp: tmp, root }
    }

    /// The home called `name` (not created).
    pub(crate) fn home(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

/// A command that must have failed with exit `code` and one `error: ` message naming `needle`.
#[track_caller]
pub(crate) fn refused(out: Output, code: i32, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(
        err.starts_with("error: ") && err.contains(needle),
        "{err:?} should mention {needle:?}"
    );
}

/// A JSON string as an owned `String`.
pub(crate) fn str_of(v: &Value) -> String {
    v.as_str().unwrap().to_string()
}

/// The patient (with a note and a medication), the GP and the organisation.
pub(crate) struct World {
    pub(crate) h: Homes,
    pub(crate) patient: PathBuf,
    pub(crate) gp: PathBuf,
    pub(crate) org: PathBuf,
    pub(crate) record: String,
    pub(crate) gp_peer: String,
    pub(crate) org_peer: String,
}

/// `hearth record add SECTION --entry ENTRY --json` on `home`, which must succeed.
#[track_caller]
pub(crate) fn add_json(home: &std::path::Path, section: &str, entry: &str) -> Value {
    json(&hearth(
        home,
        &["record", "add", section, "--entry", entry, "--json"],
    ))
}

/// A new [`World`].
pub(crate) fn world() -> World {
    let h = Homes::new();
    let (patient, gp, org) = (h.home("patient"), h.home("gp"), h.home("org"));
    init(&patient, "patient", "Edith");
    init(&gp, "professional", "Dr A. Shah");
    init(&org, "relay", "Riverside Practice");
    add_json(&patient, "notes", r#"{"text": "seen"}"#);
    add_json(&patient, "medications", r#"{"name": "Metformin 500mg"}"#);
    let id = |home: &PathBuf, key: &str| str_of(&json(&hearth(home, &["id", "--json"]))[key]);
    let record = id(&patient, "record_id");
    let gp_peer = id(&gp, "peer_id");
    let org_peer = id(&org, "peer_id");
    World {
        h,
        patient,
        gp,
        org,
        record,
        gp_peer,
        org_peer,
    }
}

impl World {
    /// `org attest` of the GP as "Dr A. Shah", GP, GMC 1234567, for `expires`: its `--json`
    /// output.
    #[track_caller]
    pub(crate) fn attest(&self, expires: &str) -> Value {
        json(&hearth(
            &self.org,
            &[
                "org",
                "attest",
                "--staff",
                &self.gp_peer,
                "--name",
                "Dr A. Shah",
                "--role",
                "GP",
                "--registration",
                "GMC 1234567",
                "--expires",
                expires,
                "--json",
            ],
        ))
    }

    /// `hearth requests add` of `request` (a `request --json` output) on the patient's node:
    /// its `--json` output.
    #[track_caller]
    pub(crate) fn add_request(&self, request: &Value) -> Value {
        json(&hearth(
            &self.patient,
            &["requests", "add", &str_of(&request["token"]), "--json"],
        ))
    }

    /// `request` from the GP to the patient's record: to read `sections` for direct care, for
    /// `expires`, giving `reason`; its `--json` output.
    #[track_caller]
    pub(crate) fn request(&self, sections: &str, expires: &str, reason: &str) -> Value {
        self.request_for(sections, "read", expires, reason)
    }

    /// [`World::request`] for `ability` (`read`, `append`).
    #[track_caller]
    pub(crate) fn request_for(
        &self,
        sections: &str,
        ability: &str,
        expires: &str,
        reason: &str,
    ) -> Value {
        json(&hearth(
            &self.gp,
            &[
                "request",
                "--to",
                &self.record,
                "--sections",
                sections,
                "--ability",
                ability,
                "--purpose",
                "direct-care",
                "--expires",
                expires,
                "--reason",
                reason,
                "--json",
            ],
        ))
    }

    /// The organisation attests the GP (for a year), the GP keeps the credential, and the
    /// patient trusts the organisation as "Riverside Practice".
    #[track_caller]
    pub(crate) fn gp_attested_and_trusted(&self) {
        let cred = self.attest("365d");
        ok(&hearth(
            &self.gp,
            &["credential", "add", &str_of(&cred["token"])],
        ));
        ok(&hearth(
            &self.patient,
            &[
                "trust",
                "add-org",
                &self.org_peer,
                "--name",
                "Riverside Practice",
            ],
        ));
    }

    /// The organisation attests the GP (for a year), the patient trusts it as "Riverside
    /// Practice", and the GP asks for `sections` with `ability` for direct care and accepts
    /// the grant the patient approves: the approval's `--json` output. The patient's node
    /// then names the GP "Dr A. Shah (GP, Riverside Practice, verified)".
    #[track_caller]
    pub(crate) fn gp_attested_and_granted(&self, sections: &str, ability: &str) -> Value {
        self.gp_attested_and_trusted();
        let req = self.request_for(sections, ability, "90d", "Annual review");
        let added = self.add_request(&req);
        let granted = json(&hearth(
            &self.patient,
            &["requests", "approve", &str_of(&added["id"]), "--json"],
        ));
        ok(&hearth(&self.gp, &["accept", &str_of(&granted["token"])]));
        granted
    }

    /// The GP's node, changed not to report its reads, syncs once with the patient's daemon
    /// `daemon` under the grant `token`, sending no audit head; the patient's node serves it.
    #[track_caller]
    pub(crate) fn gp_takes_without_reporting(&self, daemon: &Daemon, token: &str) {
        let chain = grant::chain_from_token(token).unwrap();
        let addr: libp2p::Multiaddr = daemon.file()["listen_addrs"][0]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let pid = str_of(&json(&hearth(&self.patient, &["id", "--json"]))["peer_id"]);
        let gp_identity = hearth_node::home::Home::new(self.gp.clone())
            .unlock(super::PASS.as_bytes())
            .unwrap();
        let req = SyncRequest {
            v: 1,
            record: self.record.parse().unwrap(),
            card: grant::request::card(&gp_identity)
                .unwrap()
                .envelope()
                .clone(),
            grants: vec![serde_bytes::ByteBuf::from(grant::chain_to_bytes(&chain))],
            have: Vec::new(),
            keys: Vec::new(),
            push: Vec::new(),
            audit: Vec::new(),
            audit_head: None,
            emergency: None,
        };
        let answers = stranger::send_as(
            stranger::keypair_of(&self.gp),
            pid.parse().unwrap(),
            addr,
            vec![encode(&Message::Request(req))],
        );
        let Message::Response(resp) = decode(answers[0].as_ref().expect("answered")).unwrap()
        else {
            panic!("not a response")
        };
        assert!(resp.refused.is_none() && !resp.bundles.is_empty());
    }
}
