//! Tests of the record engine as a whole.

mod check;
mod disputes;
mod hostile_bundles;
mod memo;
mod merge;
mod peer_grant;
mod restore;
mod revoke;

use crate::entry::{EntryStatus, EntryVersion, Provenance};
use crate::ids::EntryId;
use crate::keys::Identity;
use crate::test_utils::{TEST_NOW, TestRng};

/// A first version of a notes entry by `author` saying `text`, written at `TEST_NOW` (its id
/// drawn from `seed`).
fn note_version(author: &Identity, text: &str, seed: u64) -> EntryVersion {
    EntryVersion {
        id: EntryId::generate(&mut TestRng::new(seed)),
        class: crate::section::SectionClass::Notes,
        version: 1,
        supersedes: None,
        status: EntryStatus::Final,
        status_reason: None,
        body: serde_json::json!({ "text": text }),
        provenance: provenance(author),
    }
}

/// `author`'s provenance at `TEST_NOW`, as its node writes it.
fn provenance(author: &Identity) -> Provenance {
    Provenance {
        author: author.peer(),
        author_name: author.name.clone(),
        author_role: author.role,
        recorded_at: TEST_NOW,
        purpose: None,
    }
}
