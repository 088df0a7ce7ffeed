//! De-identified extracts for research and planning (issue #5, DESIGN §10).
//!
//! A patient opts in or out of two secondary uses of their record, **research** and
//! **planning** (commissioning), each off until they say otherwise. An opted-in patient's node
//! makes, for one named recipient (a commissioner's node, named by its peer id) and one purpose,
//! a signed, de-identified **contribution**: a handful of aggregate-friendly facts and nothing
//! that names the patient. The recipient pools many contributions into counts with
//! small-number suppression. Nothing leaves the patient's node unless the patient runs the
//! command; the network delivery comes with the relays.
//!
//! What a contribution holds ([`Profile`]): a 5-year age band (`90+` at the top), administrative
//! gender, the postcode district (the outward code, e.g. `LS1`), and the codes (SNOMED CT,
//! ICD-10, dm+d; never free text) of current conditions and medicines, from `general`-label
//! sections only. Never a name, NHS number, address, full postcode, contact detail, exact date
//! of birth, free text, or anything from a `mental-health`, `sexual-health`, `safeguarding` or
//! `social-care` section.
//!
//! **Pseudonym and signature are one key.** For each (recipient, purpose) the node derives an
//! ed25519 key with HKDF-SHA256 from the record root key ([`contribution_key`]). Its public half
//! is the contribution's [`Pseudonym`], and the contribution is signed with its private half.
//! So the recipient can check that a file was not altered and that two files come from the same
//! record (same pseudonym: a duplicate) without learning which record: the record root key, the
//! record id and the device key never appear, and without the root key nobody can link the
//! pseudonyms one record shows to different recipients or purposes. Nobody but the record's
//! holder can produce a valid contribution under an existing pseudonym. The same recovery
//! phrase gives the same pseudonyms, so a restored record is still recognised as one.
//!
//! The patient's choices are [`ConsentChoice`]s, signed by the record root key, kept in the
//! patient's private consent ledger (`consent/…` items) next to a [`ContributionRecord`]
//! (`contribution/…`) for every contribution made: who, why, when, which id, never the content.
//!
//! ```
//! use hearth_core::extract::{Aggregator, Consents, ConsentChoice, Contribution, Dimension,
//!     ExtractPurpose, Suppression};
//! use hearth_core::ids::PeerKey;
//! use hearth_core::keys::{Identity, Role};
//! use hearth_core::test_utils::{TestRng, TEST_NOW};
//!
//! let mut rng = TestRng::new(1);
//! let (patient, _) = Identity::generate(Role::Patient, "Edith".into(), &mut rng);
//! let root = patient.root_key().unwrap();
//! let record = patient.record_id().unwrap();
//! let icb = PeerKey([9; 32]);
//!
//! // Off by default: no contribution.
//! let none = Consents::default();
//! assert!(Contribution::create(root, &none, icb, ExtractPurpose::Planning, &[], TEST_NOW, &mut rng).is_err());
//!
//! // Opted in: a signed contribution the recipient can verify and count.
//! let on = ConsentChoice::sign(root, &record, ExtractPurpose::Planning, true, TEST_NOW);
//! let consents = Consents::from_choices(&record, [on]);
//! let c = Contribution::create(root, &consents, icb, ExtractPurpose::Planning, &[], TEST_NOW, &mut rng).unwrap();
//! let file = c.to_file();
//! let back = Contribution::from_file(&file).unwrap();
//! let mut agg = Aggregator::new(icb, Some(ExtractPurpose::Planning));
//! agg.add(back).unwrap();
//! let table = agg.finish(&[Dimension::Gender], Suppression::default());
//! assert_eq!(table.rows[0].values, vec!["unknown".to_string()]);
//! ```

mod choices;
mod contribution;
mod pooling;
mod profile;
mod pseudonym;

pub use choices::{ConsentChoice, Consents, ExtractPurpose};
pub use contribution::{Contribution, ContributionBody, ContributionRecord};
pub use pooling::{Aggregator, Count, Dimension, Row, Suppression, Table};
pub use profile::{Profile, age_band, postcode_area, postcode_district, wider_age_band};
pub use pseudonym::{Pseudonym, contribution_key, pseudonym};

use crate::ids::PeerKey;

/// The format tag of a contribution file (outside and inside the signed body).
pub const FORMAT: &str = "hearth-contribution/1";
/// The largest contribution file accepted, in bytes (a real one is about 1 KiB).
pub const MAX_FILE_BYTES: u64 = 256 * 1024;
/// The most condition or medication codes one contribution may carry.
pub const MAX_CODES: usize = 500;
/// Ledger items holding the patient's choices start with this.
pub const CONSENT_PREFIX: &str = "consent/";
/// Ledger items recording contributions start with this.
pub const CONTRIBUTION_PREFIX: &str = "contribution/";
/// Width of an age band, in years.
pub const AGE_BAND_YEARS: i32 = 5;
/// Ages from this one up share the top band (`90+`).
pub const TOP_AGE: i32 = 90;

/// Why an extract operation was refused. No variant carries record content, a key or a
/// pseudonym.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// The patient has not opted in to this purpose (or opted out again): nothing is made.
    #[error("not opted in to {0} use of the record (hearth consent {0} on)")]
    NotOptedIn(ExtractPurpose),
    /// The file is not a contribution: not JSON, wrong shape, wrong format tag (the sender's or
    /// a copy's fault).
    #[error("not a contribution file: {0}")]
    Malformed(&'static str),
    /// Larger than [`MAX_FILE_BYTES`].
    #[error("the file is larger than a contribution can be ({} KiB)", MAX_FILE_BYTES / 1024)]
    TooLarge,
    /// The signature does not verify: the signed part was altered, or signed by another key.
    #[error("bad signature (altered, or not signed by its pseudonym's key)")]
    BadSignature,
    /// The readable copy differs from the signed body: the file was edited after signing.
    #[error("the readable part differs from the signed part (the file was edited)")]
    Tampered,
    /// A format rule of the body is broken.
    #[error("invalid contribution: {0}")]
    Invalid(&'static str),
    /// Made for another recipient.
    #[error("made for another recipient ({0})")]
    WrongRecipient(PeerKey),
    /// Made for another purpose than the one being aggregated.
    #[error("made for {found} uses, not {expected}", found = .found.words(), expected = .expected.words())]
    WrongPurpose {
        /// The purpose being aggregated.
        expected: ExtractPurpose,
        /// The contribution's purpose.
        found: ExtractPurpose,
    },
    /// The same contribution (same id) was given twice.
    #[error("the same contribution was already given (item {earlier})")]
    DuplicateContribution {
        /// The position (from 0) of the earlier copy among those added.
        earlier: usize,
    },
    /// A second contribution from the same record for this recipient and purpose.
    #[error("a second contribution from the same record (same pseudonym as item {earlier})")]
    DuplicatePseudonym {
        /// The position (from 0) of the earlier one among those added.
        earlier: usize,
    },
    /// The key given is not a record root key.
    #[error("only the record's owner can contribute it")]
    NotOwner,
}

#[cfg(test)]
mod tests;
