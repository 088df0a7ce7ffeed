//! Break-glass on the patient's side: arranging emergency access with an organisation,
//! cancelling it, finding the arrangement a use names, and moving the keys an emergency use
//! opened once it is over. The rules a use must meet are in [`crate::grant::emergency`].

use super::{OpenRecord, RecordError, Result, Vault};
use crate::audit::{Action, SignedEvent};
use crate::ids::{PeerKey, RecordId, SectionId};
use crate::ledger::{ArrangementItem, HeldEmergency, Key, Kind};
use crate::store::Store;
use crate::time::Timestamp;
use rand_core::CryptoRng;
use std::collections::{BTreeMap, BTreeSet};

/// An emergency use as the patient's node saw it served.
#[derive(Clone, Debug)]
pub struct EmergencyUseSeen {
    /// The use's id (hex).
    pub id: String,
    /// When it was first served (the serving device's clock).
    pub first: Timestamp,
    /// Who used it.
    pub by: PeerKey,
    /// The receipt's mark: organisation, reason, end, credential.
    pub mark: crate::audit::EmergencyMark,
    /// The sections it opened.
    pub sections: BTreeSet<SectionId>,
    /// Whether those sections have moved to new keys since.
    pub rotated: bool,
}

impl<S: Store> OpenRecord<'_, S> {
    /// Arranges emergency access with `org` (patient only). An organisation that keeps the
    /// record as one of its relays is refused: it would hold both the ciphertext and, in an
    /// emergency, the right to its keys, and could read without anyone seeing.
    pub fn arrange_emergency(
        &mut self,
        org: PeerKey,
        item: ArrangementItem,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<()> {
        if self.relays(now).iter().any(|(p, _)| *p == org) {
            return Err(RecordError::NotPermitted(
                "that organisation keeps this record as a relay: emergency access must be \
                 arranged with an organisation that does not also hold the record's ciphertext",
            ));
        }
        if item.scopes.is_empty()
            || !(crate::grant::emergency::MIN_DURATION_MS
                ..=crate::grant::emergency::MAX_DURATION_MS)
                .contains(&item.max_duration_ms)
            || item.expires <= now
        {
            return Err(RecordError::Invalid(
                "an arrangement needs sections, a use length from one minute to three days, \
                 and an end in the future",
            ));
        }
        let key = Key::Arrangement(&org, item.arranged_at.as_millis()).text();
        self.put_auth_items(vec![(key, item.to_json())], now, rng)
    }

    /// Cancels every current arrangement with `org`; returns how many.
    pub fn cancel_emergency(
        &mut self,
        org: &PeerKey,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<usize> {
        let open: Vec<i64> = self
            .arrangement_items()
            .into_iter()
            .filter(|(o, _, item, cancelled)| o == org && !cancelled && item.expires > now)
            .map(|(_, at, _, _)| at)
            .collect();
        if open.is_empty() {
            return Ok(0);
        }
        let items = open
            .iter()
            .map(|at| {
                (
                    Key::ArrangementCancelled(org, *at).text(),
                    serde_json::json!({ "at": now }).to_string(),
                )
            })
            .collect();
        self.put_auth_items(items, now, rng)?;
        Ok(open.len())
    }

    /// Every arrangement ever made: organisation, key time, item, whether cancelled.
    fn arrangement_items(&self) -> Vec<(PeerKey, i64, ArrangementItem, bool)> {
        let cancelled: BTreeSet<String> = self
            .auth_items(Kind::ArrangementCancelled.prefix())
            .into_iter()
            .filter_map(|(k, _)| Some(Kind::ArrangementCancelled.id_in(&k)?.to_string()))
            .collect();
        self.auth_items(Kind::Arrangement.prefix())
            .into_iter()
            .filter_map(|(k, v)| {
                let id = Kind::Arrangement.id_in(&k)?;
                let (org, at) = id.split_once('/')?;
                let item = ArrangementItem::from_json(&v).ok()?;
                Some((
                    org.parse().ok()?,
                    at.parse().ok()?,
                    item,
                    cancelled.contains(id),
                ))
            })
            .collect()
    }

    /// Every organisation the patient ever arranged emergency access with (a relay's emergency
    /// receipt is taken only under one of them).
    pub fn arranged_orgs(&self) -> BTreeSet<PeerKey> {
        self.arrangement_items()
            .into_iter()
            .map(|(org, _, _, _)| org)
            .collect()
    }

    /// The arrangements in force at `now`, one per organisation (the newest).
    pub fn arrangements(&self, now: Timestamp) -> BTreeMap<PeerKey, ArrangementItem> {
        let mut out: BTreeMap<PeerKey, ArrangementItem> = BTreeMap::new();
        for (org, _, item, cancelled) in self.arrangement_items() {
            if cancelled || item.expires <= now {
                continue;
            }
            if out
                .get(&org)
                .is_none_or(|have| have.arranged_at < item.arranged_at)
            {
                out.insert(org, item);
            }
        }
        out
    }

    /// Every emergency use served (by any of the patient's devices or the record's relays, as
    /// the audit log and this device's journal show), one per use, with whether its sections
    /// have moved to new keys since.
    pub fn emergency_uses(&mut self) -> Vec<EmergencyUseSeen> {
        let done: BTreeSet<String> = self
            .auth_items(Kind::EmergencyRotated.prefix())
            .into_iter()
            .filter_map(|(k, _)| Some(Kind::EmergencyRotated.id_in(&k)?.to_string()))
            .collect();
        let mut events: Vec<Vec<u8>> = self.audit_stored().into_iter().map(|(_, _, b)| b).collect();
        let sent = self.vault.journal_sent(&self.id).unwrap_or(0);
        events.extend(
            self.vault
                .journal_after(&self.id, sent, usize::MAX)
                .unwrap_or_default(),
        );
        // Only the patient's devices and the record's relays write receipts; anything else
        // claiming one is ignored.
        let mut servers: BTreeSet<PeerKey> = self.all_device_peers();
        servers.extend(self.relay_peers());
        let mut uses: BTreeMap<String, EmergencyUseSeen> = BTreeMap::new();
        for b in events {
            let Ok(ev) = SignedEvent::open(&b) else {
                continue;
            };
            let e = ev.event();
            if !servers.contains(&e.writer) {
                continue;
            }
            if let Action::Served {
                to,
                sections,
                emergency: Some(mark),
                ..
            } = &e.action
            {
                let id = data_encoding::HEXLOWER.encode(mark.use_id.as_slice());
                let seen = uses.entry(id.clone()).or_insert_with(|| EmergencyUseSeen {
                    rotated: done.contains(&id),
                    id,
                    first: e.at,
                    by: *to,
                    mark: mark.clone(),
                    sections: BTreeSet::new(),
                });
                seen.first = seen.first.min(e.at);
                seen.sections.extend(sections.iter().map(|s| s.section));
            }
        }
        uses.into_values().collect()
    }

    /// Emergency uses over at `now` whose sections have not yet moved to new keys.
    pub fn emergency_rotations_due(&mut self, now: Timestamp) -> Vec<EmergencyUseSeen> {
        self.emergency_uses()
            .into_iter()
            .filter(|u| !u.rotated && u.mark.until <= now)
            .collect()
    }

    /// On the device holding the record root: moves the sections every finished emergency
    /// use opened to new keys (wrapped only to the patient's devices, the recovery key and,
    /// at their next sync, the grantees who may still read them), and notes each use done.
    /// Returns how many uses were closed.
    pub fn rotate_after_emergencies(
        &mut self,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<usize> {
        if !self.holds_root() {
            return Ok(0);
        }
        let due = self.emergency_rotations_due(now);
        for u in &due {
            let sections: Vec<SectionId> = u.sections.iter().copied().collect();
            self.rotate_keys(&sections, now, rng)?;
            self.put_auth_items(
                vec![(
                    Key::EmergencyRotated(&u.id).text(),
                    serde_json::json!({ "at": now }).to_string(),
                )],
                now,
                rng,
            )?;
        }
        Ok(due.len())
    }
}

impl<S: Store> Vault<S> {
    /// Keeps the emergency use this node's user signed for `record` (replacing an earlier one).
    pub fn hold_emergency(&self, record: &RecordId, held: &HeldEmergency) -> Result<()> {
        self.put_local(
            &Key::HeldEmergency(record).text(),
            held.to_json().as_bytes(),
        )
    }

    /// The records this node's user holds an emergency use for.
    pub fn emergency_records(&self) -> Result<Vec<RecordId>> {
        Ok(self
            .local_items(Kind::HeldEmergency.prefix())?
            .into_iter()
            .filter_map(|(k, _)| Kind::HeldEmergency.id_in(&k)?.parse().ok())
            .collect())
    }

    /// The emergency use this node's user signed for `record`, if any.
    pub fn held_emergency(&self, record: &RecordId) -> Result<Option<HeldEmergency>> {
        Ok(self
            .get_local(&Key::HeldEmergency(record).text())?
            .and_then(|b| HeldEmergency::from_json(std::str::from_utf8(&b).ok()?).ok()))
    }
}
