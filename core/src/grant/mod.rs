//! Capabilities: grants, delegation, verification, access requests and credentials.
//!
//! A **grant** is a certificate signed by its issuer: this audience may exercise these
//! abilities on these sections of this record, from `not_before` until `expires` (mandatory),
//! for this purpose. The patient's
//! record root key issues root grants; a grant with `depth > 0` lets its audience (typically an
//! organisation) **delegate** a narrower grant to another key (a member of staff), naming its
//! parent by hash. Delegation only ever attenuates: scopes and validity lie within the
//! parent's, and depth strictly decreases.
//!
//! **Record-time windows are not supported.** The format has room for one ([`Window`]), but
//! sync moves whole section logs, so a window could not be enforced; judging it by an entry's
//! self-declared time would be no check at all. Issuing never writes one, and [`verify_chain`]
//! refuses any chain carrying one ([`Refusal::WindowNotSupported`]), so no grant claims a limit
//! that is not enforced.
//!
//! [`verify_chain`] is the one pure function that decides: given a chain (root first), who
//! presents it, what they ask for, the time and the revocation set, it returns the rights granted
//! or a typed [`Refusal`]. It allows ±60 s of clock difference. A grant is never a bearer token:
//! the holder proves its key ([`challenge`]) and verification checks the holder is the audience.
//!
//! Signatures of a chain are checked together with ed25519 batch verification, after refusing
//! weak (small-order) keys.
//!
//! ```
//! use hearth_core::grant::{Ability, Grant, GrantSpec, Purpose, verify_chain, Access};
//! use hearth_core::keys::{Identity, Role};
//! use hearth_core::test_utils::{TestRng, TEST_NOW};
//!
//! let mut rng = TestRng::new(1);
//! let (patient, _) = Identity::generate(Role::Patient, "Pat".into(), &mut rng);
//! let (gp, _) = Identity::generate(Role::Professional, "Dr Gee".into(), &mut rng);
//! let spec = GrantSpec::new(
//!     gp.peer(),
//!     "notes,medications".parse().unwrap(),
//!     Ability::Read,
//!     TEST_NOW,
//!     TEST_NOW.saturating_add_millis(30 * 86_400_000),
//! );
//! let grant = Grant::issue_root(&patient, spec, &[], &mut rng).unwrap();
//! let chain = vec![grant];
//! let access = Access::section(gp.peer(), "notes".parse().unwrap(), Ability::Read);
//! let rights = verify_chain(&chain, &access, TEST_NOW, &|_| false).unwrap();
//! assert_eq!(rights.purpose, Purpose::DirectCare);
//! let denied = Access::section(gp.peer(), "notes:mental-health".parse().unwrap(), Ability::Read);
//! assert!(verify_chain(&chain, &denied, TEST_NOW, &|_| false).is_err());
//! ```

pub mod challenge;
pub mod emergency;
pub mod interop;
pub mod proxy;
pub mod request;
pub mod token;

mod body;
mod chain;
mod revocation;
mod scope;
mod verify;

pub use body::{Grant, GrantBody, GrantId, GrantSpec, KeyGrant, RELAY_HINT, Window, relay_hints};
pub use chain::{chain_from_bytes, chain_from_token, chain_to_bytes, chain_to_token};
pub use revocation::Revocation;
pub use scope::{Ability, Purpose, Scope, key_sections, scopes};
pub(crate) use verify::verify_signatures;
pub use verify::{Access, Rights, verify_chain};

use crate::time::Timestamp;
use token::TokenError;

/// Clock difference tolerated between nodes, in milliseconds.
pub const CLOCK_TOLERANCE_MS: i64 = 60_000;
/// The longest chain accepted.
pub const MAX_CHAIN: usize = 4;
/// The most scopes in one grant.
pub const MAX_SCOPES: usize = 64;
/// The most addresses a grant carries.
pub const MAX_ADDRESSES: usize = 8;
/// The most wrapped keys a grant carries.
pub const MAX_KEYS: usize = 128;
/// The longest validity a grant may have (five years).
pub const MAX_VALIDITY_MS: i64 = 5 * 366 * 86_400_000;
/// The deepest delegation allowed.
pub const MAX_DEPTH: u8 = 3;

/// Why a grant (chain) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The token could not be read.
    #[error("malformed grant: {0}")]
    Malformed(#[from] TokenError),
    /// A rule of the format is broken (e.g. no scopes, validity too long).
    #[error("invalid grant: {0}")]
    Invalid(&'static str),
    /// A signature does not verify (altered, or signed by the wrong key).
    #[error("bad signature on link {link} of the chain")]
    BadSignature {
        /// 0 for the root grant.
        link: usize,
    },
    /// The chain does not start at the record's root key.
    #[error("unknown issuer: the first grant is not signed by the record's owner")]
    UnknownIssuer,
    /// A link does not name its parent or was not issued by the parent's audience.
    #[error("broken chain at link {link}")]
    BrokenChain {
        /// The link.
        link: usize,
    },
    /// A delegation is wider than its parent.
    #[error("scope exceeded at link {link}: {what}")]
    ScopeExceeded {
        /// The link (or the chain's length for the requested access).
        link: usize,
        /// What exceeds.
        what: &'static str,
    },
    /// A delegation at depth 0, or not strictly decreasing.
    #[error("delegation depth exceeded at link {link}")]
    DepthExceeded {
        /// The link.
        link: usize,
    },
    /// Expired.
    #[error("expired at {at}")]
    Expired {
        /// When.
        at: Timestamp,
    },
    /// Not valid yet.
    #[error("not valid until {from}")]
    NotYetValid {
        /// From when.
        from: Timestamp,
    },
    /// A link has been revoked.
    #[error("revoked (link {link})")]
    Revoked {
        /// The link.
        link: usize,
    },
    /// The presenter is not the audience.
    #[error("wrong audience: this grant was issued to someone else")]
    WrongAudience,
    /// A link names another record.
    #[error("the chain mixes records")]
    WrongRecord,
    /// A link carries a record-time window, which Hearth does not enforce (see [`Window`]).
    #[error("record-time windows are not supported (link {link} carries one)")]
    WindowNotSupported {
        /// The link.
        link: usize,
    },
}

#[cfg(test)]
mod tests;
