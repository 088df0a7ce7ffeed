//! The key wraps a relay keeps for a record: taking a patient device's set in place of the kept
//! one, and which of them a requester is handed.

use super::super::access::AccessEntry;
use super::super::wire::Agreement;
use super::kept::Hosted;
use hearth_core::ids::{PeerKey, SectionId};
use hearth_core::record::KeyWrap;
use serde_bytes::ByteArray;
use std::collections::{BTreeMap, BTreeSet};

/// Where a wrap belongs: one wrap per (section, key epoch, recipient).
pub(super) type Slot = (SectionId, u32, ByteArray<32>);

/// `w`'s [`Slot`].
pub(super) fn slot(w: &KeyWrap) -> Slot {
    (w.section, w.epoch, w.recipient)
}

/// Takes the wraps a patient device sent (`sent`, with the record root's one signature over
/// them all, `signed`, if it came) in place of those `hosted` keeps. Wraps are fresh ciphertext
/// each time, so one for a slot already kept (and verified) is kept as it was; only new ones
/// are checked against the record root, and a new one that does not check is left out.
/// Returns whether the kept set changed.
pub(super) fn replace_kept(
    hosted: &mut Hosted,
    sent: Vec<KeyWrap>,
    signed: Option<ByteArray<64>>,
) -> bool {
    let record = hosted.record;
    let kept: BTreeMap<Slot, KeyWrap> = hosted.wraps.drain(..).map(|w| (slot(&w), w)).collect();
    // The root's one signature over all the wraps sent vouches for every new one; without it
    // (or if it does not check), the new ones' own signatures are checked together (one batch
    // when all are good).
    let new: Vec<&KeyWrap> = sent
        .iter()
        .filter(|w| w.record == record && !kept.contains_key(&slot(w)))
        .collect();
    // (Nothing to check when every wrap sent is one already kept.)
    let vouched = !new.is_empty()
        && signed.is_some_and(|s| KeyWrap::verify_all(&record, &sent, &s.into_array()));
    let verdicts = if vouched {
        vec![true; new.len()]
    } else {
        KeyWrap::verify_many(&new)
    };
    let mut good = verdicts.into_iter();
    let mut changed = false;
    let mut fresh = BTreeMap::new();
    for w in sent {
        let s = slot(&w);
        let is_new = w.record == record && !kept.contains_key(&s);
        // Every new wrap takes its verdict in order, whether or not it is used.
        let ok = is_new && good.next().unwrap_or(false);
        if fresh.contains_key(&s) {
            continue;
        }
        match kept.get(&s) {
            Some(old) => {
                fresh.insert(s, old.clone());
            }
            None if ok => {
                changed = true;
                fresh.insert(s, w);
            }
            None => {}
        }
    }
    changed |= fresh.len() != kept.len();
    hosted.wraps = fresh.into_values().collect();
    changed
}

/// The wraps `hosted` keeps that `entry`'s peer (`peer`) is handed:
///
/// - a patient device, all but those it sent (`sent`: it made them);
/// - an emergency use under an arrangement with the organisation whose agreement key is `org`,
///   the escrow wraps to that organisation for the sections it may read (`readable`), which
///   the organisation releases to the professional once it has logged the use;
/// - a grantee, the wraps for the sections it may read to its agreement key (when its device
///   key signed it: `agreement`), or to its device key's X25519 form (a grant made to its bare
///   peer id; the connection proves the peer).
pub(super) fn for_requester(
    hosted: &Hosted,
    entry: &AccessEntry,
    peer: &PeerKey,
    agreement: Option<&Agreement>,
    org: Option<ByteArray<32>>,
    sent: &BTreeSet<Slot>,
    readable: &BTreeSet<SectionId>,
) -> Vec<KeyWrap> {
    let to = |recipient: &dyn Fn(&KeyWrap) -> bool| -> Vec<KeyWrap> {
        hosted
            .wraps
            .iter()
            .filter(|w| recipient(w))
            .cloned()
            .collect()
    };
    if entry.device {
        return to(&|w| !sent.contains(&slot(w)));
    }
    if org.is_some() {
        return to(&|w| Some(w.recipient) == org && readable.contains(&w.section));
    }
    let signed = agreement.filter(|a| a.signed_by(peer)).map(|a| a.key);
    let device = peer.device_agreement().ok().map(ByteArray::new);
    to(&|w| {
        (Some(w.recipient) == signed || Some(w.recipient) == device)
            && readable.contains(&w.section)
    })
}
