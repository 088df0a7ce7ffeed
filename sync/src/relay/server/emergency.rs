//! An organisation's node in an emergency use: logging its own staff's uses for the IG review
//! and releasing escrowed keys to them, and, at a relay, what a logged use may fetch under the
//! patient's arrangements.

use super::super::access::{AccessEntry, AccessList};
use super::super::wire::{Agreement, EmergencyLogRequest, MAX_WRAPS};
use super::Server;
use crate::protocol::EmergencyClaim;
use crate::session::SyncError;
use hearth_core::audit::{Action, Authority, EmergencyMark, SectionAt};
use hearth_core::grant::emergency::{self, EmergencyUse, LoggedUse};
use hearth_core::grant::request::Credential;
use hearth_core::grant::{GrantId, Purpose};
use hearth_core::ids::{PeerKey, SectionId};
use hearth_core::keywrap::EscrowedKey;
use hearth_core::ledger::{IgUseItem, Key, Kind};
use hearth_core::record::{LocalCount, Vault};
use hearth_core::store::{Batch, Store};
use hearth_core::time::Timestamp;
use rand_core::CryptoRng;
use serde_bytes::ByteArray;

/// The most emergency uses an organisation's node keeps logged (each is needed for its IG
/// review, so a full log refuses new uses rather than forgetting old ones).
pub const MAX_IG_USES: usize = 1_000_000;
/// Why an emergency use was not logged when the log holds [`MAX_IG_USES`].
const IG_LOG_FULL: &str = "the organisation's emergency log is full";
/// The count of emergency uses logged, moved in the same commit as their items, so that
/// [`MAX_IG_USES`] is checked with one read.
pub const IG_USE_COUNT: LocalCount = LocalCount {
    key: Kind::IgUseCount.prefix(),
    prefix: Kind::IgUse.prefix(),
};
impl<S: Store> Server<'_, S> {
    /// On the organisation's node, for a use of its own staff it has just logged: releases
    /// the keys inside the escrow wraps `e` carries (the patient's, for the use's record,
    /// addressed to this organisation) to `peer`'s signed agreement key. Anything else is left
    /// out; nothing at all without the professional's agreement key.
    pub(super) fn release(
        &self,
        peer: &PeerKey,
        e: &EmergencyLogRequest,
        agreement: Option<&Agreement>,
        rng: &mut impl CryptoRng,
    ) -> Vec<EscrowedKey> {
        let (Some(a), Ok(use_)) = (agreement, EmergencyUse::from_token(&e.token)) else {
            return Vec::new();
        };
        if !a.signed_by(peer) || use_.body().holder != *peer {
            return Vec::new();
        }
        let record = use_.body().record;
        e.wraps
            .iter()
            .take(MAX_WRAPS)
            .filter_map(|w| {
                EscrowedKey::release(
                    w.clone(),
                    &record,
                    self.identity.agreement_secret(),
                    a.key.into_array(),
                    rng,
                )
                .ok()
            })
            .collect()
    }

    /// Logs the emergency use `e` that `peer` presents, if this node is the organisation it
    /// names and attests `peer` now ([`emergency::log_use`]): the entry is kept durably for
    /// the IG review before the signed entry is returned. Logging the same use again returns
    /// the entry kept. `Ok(Err(why))` when it is not logged.
    pub(super) fn log_emergency(
        &self,
        peer: PeerKey,
        e: &EmergencyLogRequest,
        now: Timestamp,
    ) -> Result<Result<String, String>, SyncError> {
        let Ok(use_) = EmergencyUse::from_token(&e.token) else {
            return Ok(Err("the emergency use does not verify".into()));
        };
        let Ok(credential) = Credential::from_token(&e.credential) else {
            return Ok(Err("the credential does not verify".into()));
        };
        // Checked before anything is looked up: only the organisation's own current staff, for
        // their own uses, reach its log.
        let logged = match emergency::log_use(self.identity, &use_, Some(&credential), &peer, now) {
            Ok(l) => l,
            Err(why) => return Ok(Err(why.to_string())),
        };
        let id = data_encoding::HEXLOWER.encode(&use_.hash());
        let key = Key::IgUse(&id).text();
        if let Some(kept) = self
            .vault
            .get_local(&key)?
            .and_then(|v| IgUseItem::from_json(std::str::from_utf8(&v).ok()?).ok())
        {
            return Ok(Ok(kept.logged));
        }
        if self.vault.local_count(&IG_USE_COUNT)? >= MAX_IG_USES as u64 {
            return Ok(Err(IG_LOG_FULL.into()));
        }
        let item = IgUseItem {
            token: e.token.clone(),
            credential: e.credential.clone(),
            logged: logged.to_token(),
        };
        let mut batch = Batch::new();
        Vault::<S>::put_local_in(&mut batch, &key, item.to_json().into_bytes());
        if !self
            .vault
            .commit_counted_up_to(&IG_USE_COUNT, MAX_IG_USES as u64, batch)?
        {
            return Ok(Err(IG_LOG_FULL.into()));
        }
        Ok(Ok(item.logged))
    }
}

/// What an emergency use `claim` presented by `peer` may fetch under `list`'s arrangements at
/// `now` ([`emergency::check_use`], at this relay's clock): a read-only entry for the
/// arranged sections until the use ends, the receipt's mark, and the organisation's agreement
/// key (whose escrow wraps are handed over). None if anything fails: the caller answers as
/// to a stranger.
pub(super) fn emergency_entry(
    list: &AccessList,
    peer: &PeerKey,
    claim: &EmergencyClaim,
    now: Timestamp,
) -> Option<(AccessEntry, EmergencyMark, ByteArray<32>)> {
    let use_ = EmergencyUse::from_token(&claim.token).ok()?;
    let credential = Credential::from_token(&claim.credential).ok()?;
    let logged = LoggedUse::from_token(claim.logged.as_deref()?).ok()?;
    let org = use_.body().org;
    // An organisation that keeps the record as a relay never also opens it in an emergency.
    if org == list.relay {
        return None;
    }
    let arranged = list.arrangement(&org, now)?;
    let allowed = emergency::check_use(
        &use_,
        Some(&credential),
        Some(&logged),
        peer,
        &list.record,
        Some(&arranged.arrangement()),
        now,
    )
    .ok()?;
    let id = ByteArray::new(use_.hash());
    let entry = AccessEntry {
        peer: *peer,
        device: false,
        read: arranged.read.clone(),
        write: Vec::new(),
        until: allowed.until,
        authority: Some(Authority {
            grant: GrantId(id),
            purpose: Purpose::Emergency,
        }),
    };
    let mark = EmergencyMark {
        use_id: id,
        org,
        reason: use_.body().reason.clone(),
        until: allowed.until,
        credential: claim.credential.clone(),
        signed_use: Some(claim.token.clone()),
    };
    // The receipt is written after the answer (on the daemon's next tick): a use whose
    // receipt could not be signed (its tokens too large) is not served at all.
    let largest = Action::Served {
        to: *peer,
        sections: arranged
            .read
            .iter()
            .chain(std::iter::once(&SectionId::AUTH))
            .take(hearth_core::audit::MAX_SECTIONS)
            .map(|s| SectionAt {
                section: *s,
                epoch: u32::MAX,
            })
            .collect(),
        bundles: u32::MAX,
        authority: entry.authority,
        reported: Some(u64::MAX),
        emergency: Some(mark.clone()),
        pushed: false,
    };
    if !hearth_core::audit::SignedEvent::fits(list.record, &largest) {
        return None;
    }
    Some((entry, mark, arranged.agreement))
}
