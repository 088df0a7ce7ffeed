//! Break-glass: emergency access a patient arranged in advance with an organisation, used by
//! one of the organisation's attested professionals with a signed reason, for a bounded time.
//!
//! The patient's arrangement is an item of the auth document ([`crate::ledger::ArrangementItem`]):
//! which organisation, which sections, for how long at most per use, until when. A
//! professional uses it by signing an [`EmergencyUse`] (why, from when, for how long) and
//! presenting it, with the organisation's credential for them, in a sync request to a node
//! that serves the record. That node checks everything at its own clock
//! ([`check_use`]): the arrangement, the credential, the signature, the reason, the window;
//! then serves the arranged sections (keys included, wrapped to the professional) and writes
//! an access receipt that marks the use as an emergency.
//!
//! Before that, the professional's node has the use logged by their organisation's node
//! ([`log_use`]): the organisation checks its own credential and signs a [`LoggedUse`], kept
//! for its IG review (`hearth org audit`). The patient's node serves no use without that
//! entry, so the organisation's list misses none that opened anything.
//!
//! Without an arrangement there is no emergency access: the record is end-to-end encrypted,
//! and nobody but the patient's devices can give anyone its keys.

use super::request::{
    Credential, SignedBody, SignedError, Verification, check_text, verify_credential,
};
use super::token::TokenKind;
use super::{CLOCK_TOLERANCE_MS, Scope};
use crate::crypto::Domain;
use crate::ids::{PeerKey, RecordId};
use crate::keys::Identity;
use crate::ledger::ArrangementItem;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteArray;

/// The longest reason, in characters.
pub const MAX_REASON: usize = 500;
/// The shortest use a professional may ask for.
pub const MIN_DURATION_MS: i64 = 60_000;
/// The longest any arrangement may allow per use: three days.
pub const MAX_DURATION_MS: i64 = 3 * 86_400_000;

/// What a professional signs to use emergency access.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmergencyBody {
    /// Version 1.
    pub v: u8,
    /// The record.
    pub record: RecordId,
    /// The professional's device key (the signer, and the peer the connection must prove).
    pub holder: PeerKey,
    /// The organisation whose arrangement is used.
    pub org: PeerKey,
    /// Why (required; shown to the patient and to the organisation's IG review).
    pub reason: String,
    /// From when (the professional's clock; checked against the server's within tolerance).
    pub at: Timestamp,
    /// For how long.
    pub duration_ms: i64,
}

impl SignedBody for EmergencyBody {
    const DOMAIN: Domain = Domain::Emergency;
    const KIND: TokenKind = TokenKind::Emergency;
    fn signer(&self) -> PeerKey {
        self.holder
    }
    fn check(&self) -> Result<(), SignedError> {
        if self.v != 1 {
            return Err(SignedError::Invalid("unsupported version"));
        }
        if self.reason.trim().is_empty() {
            return Err(SignedError::Invalid("emergency access needs a reason"));
        }
        // One line: a reason is shown inside a line of the patient's audit, where a line
        // break could make it look like another event.
        if self.reason.chars().any(char::is_control) {
            return Err(SignedError::Invalid(
                "a reason is one line, with no control characters",
            ));
        }
        check_text(
            &self.reason,
            MAX_REASON,
            "reason (at most 500 characters, no control characters)",
        )?;
        if !(MIN_DURATION_MS..=MAX_DURATION_MS).contains(&self.duration_ms) {
            return Err(SignedError::Invalid(
                "an emergency use lasts from one minute to three days",
            ));
        }
        Ok(())
    }
}

/// A signed emergency use.
pub type EmergencyUse = super::request::Signed<EmergencyBody>;

impl EmergencyUse {
    /// When the use ends (by its own terms; an arrangement may end it sooner).
    pub fn until(&self) -> Timestamp {
        self.body()
            .at
            .saturating_add_millis(self.body().duration_ms)
    }
}

/// What an organisation signs when one of its professionals tells it of an emergency use: its
/// IG log entry for the use. A patient's node serves a use only with its organisation's entry,
/// so the organisation's list of uses (`hearth org audit`) misses none that opened anything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggedBody {
    /// Version 1.
    pub v: u8,
    /// The organisation (the signer).
    pub org: PeerKey,
    /// The use's id (the hash of what the professional signed).
    pub use_id: ByteArray<32>,
    /// The professional.
    pub holder: PeerKey,
    /// The record.
    pub record: RecordId,
    /// When the organisation logged it (its clock).
    pub at: Timestamp,
}

impl SignedBody for LoggedBody {
    const DOMAIN: Domain = Domain::EmergencyLog;
    const KIND: TokenKind = TokenKind::EmergencyLog;
    fn signer(&self) -> PeerKey {
        self.org
    }
    fn check(&self) -> Result<(), SignedError> {
        if self.v != 1 {
            return Err(SignedError::Invalid("unsupported version"));
        }
        Ok(())
    }
}

/// An organisation's signed log entry for an emergency use.
pub type LoggedUse = super::request::Signed<LoggedBody>;

/// On the organisation's node (`org`): checks the use `remote` presents with `credential` at
/// `now` — signed by `remote`, naming this organisation, attested by it now, not dated in the
/// future, not over — and signs its log entry. The caller keeps the entry for its IG review
/// before it answers.
pub fn log_use(
    org: &Identity,
    use_: &EmergencyUse,
    credential: Option<&Credential>,
    remote: &PeerKey,
    now: Timestamp,
) -> Result<LoggedUse, EmergencyRefusal> {
    let b = use_.body();
    if b.holder != *remote {
        return Err(EmergencyRefusal::NotTheHolder);
    }
    if b.org != org.peer() {
        return Err(EmergencyRefusal::Credential(
            "the use names another organisation".into(),
        ));
    }
    match verify_credential(credential, remote, &[org.peer()], now) {
        Verification::Verified { .. } => {}
        Verification::Unverified { reason } => return Err(EmergencyRefusal::Credential(reason)),
    }
    if b.at.as_millis() > now.as_millis().saturating_add(CLOCK_TOLERANCE_MS) {
        return Err(EmergencyRefusal::Window("dated in the future"));
    }
    if now > use_.until() {
        return Err(EmergencyRefusal::Window("over"));
    }
    LoggedUse::sign(
        LoggedBody {
            v: 1,
            org: org.peer(),
            use_id: ByteArray::new(use_.hash()),
            holder: b.holder,
            record: b.record,
            at: now,
        },
        org.device_key(),
    )
    .map_err(|_| EmergencyRefusal::NotLogged)
}

/// Whether `logged` is the use's organisation's entry for exactly this use, made while it ran.
fn logged_for(use_: &EmergencyUse, logged: Option<&LoggedUse>) -> bool {
    let b = use_.body();
    logged.is_some_and(|l| {
        let lb = l.body();
        lb.org == b.org
            && lb.use_id.into_array() == use_.hash()
            && lb.holder == b.holder
            && lb.record == b.record
            && lb.at.as_millis().saturating_add(CLOCK_TOLERANCE_MS) >= b.at.as_millis()
            && lb.at <= use_.until()
    })
}

/// What a checked use allows.
#[derive(Clone, Debug, PartialEq)]
pub struct Allowed {
    /// The arranged sections, to read.
    pub scopes: Vec<Scope>,
    /// Until when (the earlier of the use's end and the arrangement's limits).
    pub until: Timestamp,
}

/// Why a use is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EmergencyRefusal {
    /// No arrangement with that organisation (or it was cancelled or has ended).
    #[error("no emergency access is arranged with that organisation")]
    NoArrangement,
    /// The presenting peer is not the professional who signed.
    #[error("the emergency use was signed by someone else")]
    NotTheHolder,
    /// For another record.
    #[error("the emergency use is for another record")]
    OtherRecord,
    /// The credential does not show the professional works for the organisation.
    #[error("the organisation's credential does not verify: {0}")]
    Credential(String),
    /// Outside its window, or longer than the arrangement allows.
    #[error("the emergency use is {0}")]
    Window(&'static str),
    /// The organisation has not logged the use for its IG review.
    #[error("the organisation has not logged this use for its IG review")]
    NotLogged,
}

/// Checks `use_` presented by `remote` with `credential` and the organisation's log entry
/// `logged`, against the arrangement (if any) the patient made with the use's organisation, at
/// `now` (the checking node's clock).
pub fn check_use(
    use_: &EmergencyUse,
    credential: Option<&Credential>,
    logged: Option<&LoggedUse>,
    remote: &PeerKey,
    record: &RecordId,
    arrangement: Option<&ArrangementItem>,
    now: Timestamp,
) -> Result<Allowed, EmergencyRefusal> {
    let b = use_.body();
    if b.holder != *remote {
        return Err(EmergencyRefusal::NotTheHolder);
    }
    if b.record != *record {
        return Err(EmergencyRefusal::OtherRecord);
    }
    let a = arrangement.ok_or(EmergencyRefusal::NoArrangement)?;
    if now > a.expires {
        return Err(EmergencyRefusal::NoArrangement);
    }
    match verify_credential(credential, remote, &[b.org], now) {
        Verification::Verified { .. } => {}
        Verification::Unverified { reason } => return Err(EmergencyRefusal::Credential(reason)),
    }
    if b.duration_ms > a.max_duration_ms {
        return Err(EmergencyRefusal::Window(
            "longer than the patient's arrangement allows",
        ));
    }
    if b.at.as_millis() > now.as_millis().saturating_add(CLOCK_TOLERANCE_MS) {
        return Err(EmergencyRefusal::Window("dated in the future"));
    }
    if b.at < a.arranged_at {
        return Err(EmergencyRefusal::Window("dated before the arrangement"));
    }
    let until = use_.until().min(a.expires);
    if now > until {
        return Err(EmergencyRefusal::Window("over"));
    }
    if !logged_for(use_, logged) {
        return Err(EmergencyRefusal::NotLogged);
    }
    Ok(Allowed {
        scopes: a.scopes.clone(),
        until,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Identity, Role};
    use crate::test_utils::{TEST_NOW, TestRng};

    #[test]
    fn a_reason_is_required_and_is_one_line() {
        let (gp, _) = Identity::generate(Role::Professional, "G".into(), &mut TestRng::new(1));
        let body = |reason: &str| EmergencyBody {
            v: 1,
            record: RecordId([1; 32]),
            holder: gp.peer(),
            org: PeerKey([2; 32]),
            reason: reason.into(),
            at: TEST_NOW,
            duration_ms: 3_600_000,
        };
        assert!(EmergencyUse::sign(body("Collapsed at home"), gp.device_key()).is_ok());
        for bad in ["", "   ", "fell\nDr X read your notes", "tab\there"] {
            assert!(
                EmergencyUse::sign(body(bad), gp.device_key()).is_err(),
                "{bad:?}"
            );
        }
        let long = "x".repeat(MAX_REASON + 1);
        assert!(EmergencyUse::sign(body(&long), gp.device_key()).is_err());
    }

    #[test]
    fn only_a_use_its_organisation_logged_opens_anything() {
        let mut rng = TestRng::new(7);
        let (gp, _) = Identity::generate(Role::Professional, "G".into(), &mut rng);
        let (org, _) = Identity::generate(Role::Relay, "Riverside".into(), &mut rng);
        let (other_org, _) = Identity::generate(Role::Relay, "Elsewhere".into(), &mut rng);
        let record = RecordId([1; 32]);
        let cred = |o: &Identity, rng: &mut TestRng| {
            crate::grant::request::attest(
                o,
                gp.peer(),
                "Dr G".into(),
                "GP".into(),
                "GMC 1".into(),
                None,
                TEST_NOW,
                TEST_NOW.saturating_add_millis(86_400_000),
                Vec::new(),
                rng,
            )
            .unwrap()
        };
        let c = cred(&org, &mut rng);
        let sign = |reason: &str, at: Timestamp| {
            EmergencyUse::sign(
                EmergencyBody {
                    v: 1,
                    record,
                    holder: gp.peer(),
                    org: org.peer(),
                    reason: reason.into(),
                    at,
                    duration_ms: 3_600_000,
                },
                gp.device_key(),
            )
            .unwrap()
        };
        let u = sign("Collapsed", TEST_NOW);
        let arrangement = ArrangementItem {
            scopes: Vec::new(),
            max_duration_ms: MAX_DURATION_MS,
            arranged_at: TEST_NOW.saturating_add_millis(-1000),
            expires: TEST_NOW.saturating_add_millis(86_400_000),
            org_name: None,
            agreement: None,
        };
        let logged = log_use(&org, &u, Some(&c), &gp.peer(), TEST_NOW).unwrap();
        let check = |l: Option<&LoggedUse>| {
            check_use(
                &u,
                Some(&c),
                l,
                &gp.peer(),
                &record,
                Some(&arrangement),
                TEST_NOW,
            )
        };
        assert!(check(Some(&logged)).is_ok());
        assert_eq!(check(None), Err(EmergencyRefusal::NotLogged));
        // Another use's entry does not count for this one.
        let other = sign("Something else", TEST_NOW);
        let other_logged = log_use(&org, &other, Some(&c), &gp.peer(), TEST_NOW).unwrap();
        assert_eq!(check(Some(&other_logged)), Err(EmergencyRefusal::NotLogged));
        // The organisation logs only its own staff's current uses, presented by them.
        assert!(matches!(
            log_use(
                &other_org,
                &u,
                Some(&cred(&other_org, &mut rng)),
                &gp.peer(),
                TEST_NOW
            ),
            Err(EmergencyRefusal::Credential(_))
        ));
        assert_eq!(
            log_use(&org, &u, Some(&c), &org.peer(), TEST_NOW).unwrap_err(),
            EmergencyRefusal::NotTheHolder
        );
        assert!(matches!(
            log_use(&org, &u, None, &gp.peer(), TEST_NOW),
            Err(EmergencyRefusal::Credential(_))
        ));
        let future = sign(
            "Later",
            TEST_NOW.saturating_add_millis(10 * CLOCK_TOLERANCE_MS),
        );
        assert_eq!(
            log_use(&org, &future, Some(&c), &gp.peer(), TEST_NOW).unwrap_err(),
            EmergencyRefusal::Window("dated in the future")
        );
        assert_eq!(
            log_use(
                &org,
                &u,
                Some(&c),
                &gp.peer(),
                TEST_NOW.saturating_add_millis(7_200_000)
            )
            .unwrap_err(),
            EmergencyRefusal::Window("over")
        );
    }
}
