//! Entries: the typed items inside a section, each with its provenance.
//!
//! An entry is never edited in place. A correction is a new [`EntryVersion`] that
//! `supersedes` the old one; "entered in error" is a new version whose status says so, with
//! the reason. The current view of a section is the set of versions nobody supersedes; the
//! history is every version, oldest first. Because each version is written once under its own
//! key, concurrent edits from different nodes never overwrite each other: two corrections of
//! the same version made offline both survive the merge and are shown as competing versions.
//!
//! The body of each entry is validated against its section class's schema ([`schema`]). A
//! patient who disagrees with an entry disputes it ([`dispute`]); the entry stays unchanged.

pub mod dispute;
pub(crate) mod raw;
pub mod schema;

use crate::ids::{EntryId, PeerKey};
use crate::keys::Role;
use crate::section::SectionClass;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

pub use schema::{CheckedBody, EntryBody, SchemaError};

/// Whether a version is in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryStatus {
    /// A normal entry.
    Final,
    /// Recorded by mistake (wrong patient, wrong item). Kept for the audit trail, shown as such.
    EnteredInError,
}

/// Who wrote a version, when, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The author's device key (peer id).
    pub author: PeerKey,
    /// The author's name as known to their node (attested identity comes with credentials).
    pub author_name: String,
    /// The author's role.
    pub author_role: Role,
    /// When the author recorded it.
    pub recorded_at: Timestamp,
    /// Purpose of use, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
}

/// One version of one entry, as stored in the section document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntryVersion {
    /// This version's id.
    pub id: EntryId,
    /// The section class, which fixes the body's schema.
    #[serde(rename = "type")]
    pub class: SectionClass,
    /// 1 for an original entry, n+1 for a version superseding version n.
    pub version: u32,
    /// The version this one replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supersedes: Option<EntryId>,
    /// Final or entered in error.
    pub status: EntryStatus,
    /// Why the status was set (for entered in error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// The validated, normalised body.
    pub body: serde_json::Value,
    /// Who, when, why.
    pub provenance: Provenance,
}

/// The fields of an [`EntryVersion`] before its body, serialised as `EntryVersion` serialises them.
#[derive(Serialize)]
struct Head<'a> {
    id: EntryId,
    #[serde(rename = "type")]
    class: SectionClass,
    version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    supersedes: Option<EntryId>,
    status: EntryStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_reason: Option<&'a str>,
}

/// The JSON text of version `v` with `body` as its body (`v.body` is not used): the same text
/// `serde_json::to_string` gives for `v` holding that body, without parsing the body again.
#[cfg(test)]
pub(crate) fn version_json(v: &EntryVersion, body: &CheckedBody) -> serde_json::Result<String> {
    let provenance = serde_json::to_string(&v.provenance)?;
    version_json_around(v, body.json().to_owned(), &provenance)
}

/// The JSON text of version `v` with `body` as its body (`v.body` is not used): the same text
/// `serde_json::to_string` gives for `v` holding that body, without parsing the body again,
/// written around the body's own text in the body's buffer (no new buffer is taken when it has
/// room for the rest, as the checked bodies import makes have).
/// `provenance` is `v.provenance` as JSON text (the same for every entry of one write, so
/// written once).
pub(crate) fn version_json_owned(
    v: &EntryVersion,
    body: CheckedBody,
    provenance: &str,
) -> serde_json::Result<String> {
    version_json_around(v, body.into_json(), provenance)
}

fn version_json_around(
    v: &EntryVersion,
    mut body: String,
    provenance: &str,
) -> serde_json::Result<String> {
    let head = serde_json::to_string(&Head {
        id: v.id,
        class: v.class,
        version: v.version,
        supersedes: v.supersedes,
        status: v.status,
        status_reason: v.status_reason.as_deref(),
    })?;
    let mut prefix = head;
    prefix.pop(); // its closing brace
    prefix.push_str(",\"body\":");
    body.reserve(prefix.len() + provenance.len() + 16);
    body.insert_str(0, &prefix);
    body.push_str(",\"provenance\":");
    body.push_str(provenance);
    body.push('}');
    Ok(body)
}

/// The longest reason accepted for marking an entry in error.
pub const MAX_REASON_LEN: usize = 2_000;
