//! Disputes: the patient's word against an entry.
//!
//! A patient who disagrees with an entry (a professional's note, an imported result) does not
//! change it: a correction is its author's to make. The patient writes a **dispute** instead: a
//! short reason, linked to the entry version disputed. Like an entry version it is written once
//! and never changed, under its own key `d/<dispute id>` in the root map of the **same section
//! document** as the entry (see [`crate::record`]), so whoever may read the entry — its author
//! among them — receives the dispute through ordinary sync.
//!
//! Only the patient's devices write disputes. Receivers refuse a grantee's bundle that carries
//! one (an `append` holder may only add entries), and readers show a dispute only when the key
//! that wrote it, the change's actor and so the bundle's verified signer, is a device the record
//! root certifies; the name shown is that certificate's, never the one the dispute claims.
//!
//! A patient may dispute an entry more than once (each dispute is kept and shown), and may
//! withdraw a dispute: a [`Withdrawal`] is itself an item written once (`w/<id>`), naming the
//! dispute; the dispute stays in the document, and readers no longer show it.

use super::Provenance;
use crate::ids::{DisputeId, EntryId};
use serde::{Deserialize, Serialize};

/// The longest reason accepted for a dispute, in characters.
pub const MAX_DISPUTE_REASON_CHARS: usize = 1_000;

/// A dispute as stored: the item `d/<id>` of the disputed entry's section document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispute {
    /// This dispute's id.
    pub id: DisputeId,
    /// The entry version disputed.
    pub entry: EntryId,
    /// Why the patient disputes it (checked by [`checked_reason`]).
    pub reason: String,
    /// The device that wrote it, its name and role as it says, and when.
    pub provenance: Provenance,
}

/// A dispute withdrawn, as stored: the item `w/<id>` of the dispute's section document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withdrawal {
    /// This withdrawal's own id.
    pub id: DisputeId,
    /// The dispute withdrawn.
    pub withdraws: DisputeId,
    /// The device that wrote it, and when.
    pub provenance: Provenance,
}

/// Why a dispute's reason is refused (the message never repeats the reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReasonError {
    /// Empty, or only white space.
    #[error("{}", self.as_str())]
    Empty,
    /// Longer than [`MAX_DISPUTE_REASON_CHARS`].
    #[error("{}", self.as_str())]
    TooLong,
    /// A control character (a new line, a tab, an escape…).
    #[error("{}", self.as_str())]
    Control,
}

impl ReasonError {
    /// The message, as a static string.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonError::Empty => "a dispute needs a reason",
            ReasonError::TooLong => "a dispute's reason may be 1000 characters at most",
            ReasonError::Control => {
                "a dispute's reason may not contain control characters such as new lines or tabs"
            }
        }
    }
}

/// A dispute's reason, trimmed, if it is acceptable: not blank, at most
/// [`MAX_DISPUTE_REASON_CHARS`] characters, one line without control characters.
pub fn checked_reason(reason: &str) -> Result<&str, ReasonError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(ReasonError::Empty);
    }
    if reason.chars().any(char::is_control) {
        return Err(ReasonError::Control);
    }
    if reason.chars().count() > MAX_DISPUTE_REASON_CHARS {
        return Err(ReasonError::TooLong);
    }
    Ok(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_trimmed_and_bounded() {
        assert_eq!(checked_reason("  not my allergy  "), Ok("not my allergy"));
        assert_eq!(checked_reason(""), Err(ReasonError::Empty));
        assert_eq!(checked_reason(" \u{a0} "), Err(ReasonError::Empty));
        assert_eq!(checked_reason("two\nlines"), Err(ReasonError::Control));
        assert_eq!(checked_reason("a\ttab"), Err(ReasonError::Control));
        assert_eq!(checked_reason("esc\u{1b}[2J"), Err(ReasonError::Control));
        assert_eq!(checked_reason("next\u{85}line"), Err(ReasonError::Control));
        let longest = "é".repeat(MAX_DISPUTE_REASON_CHARS);
        assert_eq!(checked_reason(&longest), Ok(longest.as_str()));
        let over = "x".repeat(MAX_DISPUTE_REASON_CHARS + 1);
        assert_eq!(checked_reason(&over), Err(ReasonError::TooLong));
    }
}
