//! A node's own summary of each record it holds: what a listing of records shows (the
//! patient's name, the sections this node can read), kept so that listing thousands of records
//! does not open every one of them.
//!
//! Opening a record costs public-key work (each key wrap's signature and HPKE open, the auth
//! document's bundles) and reading the name loads the demographics section: about a
//! millisecond a record, ten seconds for a professional's node of 10,000. A summary is the
//! result of exactly that opening and reading, stored with a fingerprint of everything it was
//! worked out from: the record's log heads (every section's, so the directory and the
//! demographics too) and the keys of its key wraps and escrowed keys. It is used only while
//! the fingerprint still matches what the store holds; any new bundle or key makes the record
//! be opened again and its summary rewritten.
//!
//! A summary holds a patient's name, so it is sealed (XChaCha20-Poly1305, bound to the record
//! id) under a key derived from this node's agreement secret: the store alone, without the
//! unlocked keystore, does not reveal it, as it does not reveal any record content.
//!
//! A listing also shows the state of each grant this node holds for the record, which depends
//! on the clock (an expiry passes without any write) and so is worked out every time; but the
//! signatures behind it (each held chain's links, each revocation learnt) do not change. The
//! summary keeps the digests naming those verified signatures ([`crypto::witnessing`]), and a
//! listing that uses the summary vouches for them ([`crypto::vouch`]): the same chains are then
//! checked in full (structure, times, revocations) without the curve arithmetic. Only this
//! node can seal a summary, so only signatures this node verified are vouched for, and a digest
//! names the exact key, message and signature bytes: a chain changed by one bit is verified
//! afresh. The held chains and learnt revocations are part of the fingerprint too.

use super::layout::{k_escrow_prefix, k_heads_of_record, k_wrap_prefix, local_key};
use super::{RecordError, Result, Vault, cbor, decbor};
use crate::crypto::{self, SymmetricKey};
use crate::grant;
use crate::ids::RecordId;
use crate::keys::Identity;
use crate::ledger::{self, Key};
use crate::section::SectionName;
use crate::store::{Batch, Store};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};

/// What a listing shows of one record held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordSummary {
    /// The newest name in the record's demographics, if this node can read them.
    pub name: Option<String>,
    /// The sections this node can read, by name.
    pub sections: Vec<String>,
}

/// A summary as stored (sealed): with the fingerprint it was made under, and the digests of
/// the signatures verified for its held chains and learnt revocations (32 bytes each).
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(with = "serde_bytes")]
    fingerprint: Vec<u8>,
    summary: RecordSummary,
    #[serde(default, with = "serde_bytes")]
    verified: Vec<u8>,
}

/// Signature digests kept with one summary, at most: every link of the most chains a node
/// keeps for a record, and a few revocations, fit well within it.
const MAX_VERIFIED: usize = 512;

/// The key summaries are sealed under: this node's own, derived from its agreement secret.
fn summary_key(identity: &Identity) -> SymmetricKey {
    SymmetricKey::from_bytes(crypto::hkdf32(
        identity.agreement_secret().as_bytes(),
        b"hearth/record-summary",
        b"v1",
    ))
}

impl<S: Store> Vault<S> {
    /// The summary of each of `records` as `identity` reads them (`None` for a record this node
    /// cannot open), from the stored summary where the record has not changed since it was
    /// made, else by opening the record; new summaries are stored in one commit (a failure to
    /// store them fails nothing).
    pub fn summaries(
        &self,
        identity: &Identity,
        records: &[RecordId],
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<Option<RecordSummary>>> {
        let key = summary_key(identity);
        let demographics: SectionName = "demographics"
            .parse()
            .map_err(|_| RecordError::Invalid("section name"))?;
        let mut batch = Batch::new();
        let mut out = Vec::with_capacity(records.len());
        for rid in records {
            let fingerprint = self.fingerprint(identity, rid)?;
            let slot = local_key(&Key::Summary(rid).text());
            let kept = self
                .store
                .get(&slot)?
                .and_then(|sealed| crypto::open(&key, &rid.0, &sealed).ok())
                .and_then(|plain| decbor::<Stored>(&plain).ok())
                .filter(|s| s.fingerprint == fingerprint);
            if let Some(s) = kept {
                let digests: Vec<[u8; 32]> = s
                    .verified
                    .chunks_exact(32)
                    .take(MAX_VERIFIED)
                    .filter_map(|d| d.try_into().ok())
                    .collect();
                crypto::vouch(&digests);
                out.push(Some(s.summary));
                continue;
            }
            let Ok(mut rec) = self.open_record(identity, rid) else {
                out.push(None);
                continue;
            };
            let sections = rec.sections().iter().map(|s| s.name.to_string()).collect();
            let name = rec.show(&demographics).ok().and_then(|v| {
                v.entries.iter().rev().find_map(|e| {
                    e.body
                        .get("name")
                        .and_then(serde_json::Value::as_str)
                        .map(String::from)
                })
            });
            let summary = RecordSummary { name, sections };
            // What a listing checks besides: the held chains' signatures, the revocations'.
            let ((), mut verified) = crypto::witnessing(|| {
                for chain in self.held_chains(rid).unwrap_or_default() {
                    let _ = grant::verify_signatures(&chain);
                }
                let _ = self.learnt_revocations(rid);
            });
            verified.truncate(MAX_VERIFIED);
            let plain = zeroize::Zeroizing::new(cbor(&Stored {
                fingerprint,
                summary: summary.clone(),
                verified: verified.concat(),
            })?);
            batch.put(slot, crypto::seal(&key, &rid.0, &plain, rng));
            out.push(Some(summary));
        }
        // Keeping them only saves the next listing time: a store that cannot take the write
        // (a full disk) does not stop this listing.
        if !batch.is_empty() {
            let _ = self.store.commit(batch);
        }
        Ok(out)
    }

    /// What a summary of `record` depends on: every log head of the record, which key wraps
    /// and escrowed keys it holds, as `identity`, and the grant chains and revocations it
    /// holds for it (SHA-256).
    fn fingerprint(&self, identity: &Identity, record: &RecordId) -> Result<Vec<u8>> {
        // Each part length-prefixed, so that no two different stores give the same bytes.
        let mut m = b"hearth/record-summary/v2".to_vec();
        let mut part = |b: &[u8]| {
            m.extend_from_slice(&(b.len() as u64).to_be_bytes());
            m.extend_from_slice(b);
        };
        part(&identity.peer().0);
        for (k, v) in self.store.scan_prefix(&k_heads_of_record(record))? {
            part(&k);
            part(&v);
        }
        for prefix in [k_wrap_prefix(record), k_escrow_prefix(record)] {
            for (k, _) in self.store.scan_prefix(&prefix)? {
                part(&k);
            }
        }
        for prefix in [ledger::held_prefix(record), ledger::learnt_prefix(record)] {
            for (k, v) in self.store.scan_prefix(&local_key(&prefix))? {
                part(&k);
                part(&v);
            }
        }
        Ok(crypto::sha256(&[&m]).to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Role;
    use crate::record::NewRecord;
    use crate::store::MemoryStore;
    use crate::test_utils::{TEST_NOW, TestRng};
    use serde_json::json;

    fn record(rng: &mut TestRng) -> (MemoryStore, Vault<MemoryStore>, Identity, RecordId) {
        let store = MemoryStore::new();
        let vault = Vault::new(store.clone());
        let (patient, _) = Identity::generate(Role::Patient, "Edith".into(), rng);
        let new = NewRecord {
            demographics: Some(json!({"name": "Edith Example", "nhs_number": "9434765919"})),
        };
        let rid = vault.create_record(&patient, new, TEST_NOW, rng).unwrap();
        (store, vault, patient, rid)
    }

    fn name_of(
        v: &Vault<MemoryStore>,
        who: &Identity,
        rid: &RecordId,
        rng: &mut TestRng,
    ) -> Option<String> {
        v.summaries(who, &[*rid], rng).unwrap()[0].clone()?.name
    }

    #[test]
    fn a_summary_is_kept_sealed_and_follows_every_change() {
        let mut rng = TestRng::new(71);
        let (store, vault, patient, rid) = record(&mut rng);
        assert_eq!(
            name_of(&vault, &patient, &rid, &mut rng).as_deref(),
            Some("Edith Example")
        );
        let slot = local_key(&Key::Summary(&rid).text());
        let sealed = store.get(&slot).unwrap().expect("the summary is stored");
        assert!(
            !sealed.windows(5).any(|w| w == b"Edith"),
            "sealed, not in clear"
        );
        // Kept: a second listing reads the same from the stored summary.
        assert_eq!(
            name_of(&vault, &patient, &rid, &mut rng).as_deref(),
            Some("Edith Example")
        );
        assert_eq!(store.get(&slot).unwrap(), Some(sealed.clone()));
        // A new demographics entry moves the record's heads: the summary is made again.
        {
            let mut rec = vault.open_record(&patient, &rid).unwrap();
            rec.add_entry(
                &"demographics".parse().unwrap(),
                &json!({"name": "Edith Newname", "nhs_number": "9434765919"}),
                TEST_NOW,
                &mut rng,
            )
            .unwrap();
        }
        assert_eq!(
            name_of(&vault, &patient, &rid, &mut rng).as_deref(),
            Some("Edith Newname")
        );
        assert_ne!(store.get(&slot).unwrap(), Some(sealed));
    }

    /// The signature digests kept with `rid`'s summary.
    fn kept_digests(store: &MemoryStore, who: &Identity, rid: &RecordId) -> Vec<u8> {
        let sealed = store
            .get(&local_key(&Key::Summary(rid).text()))
            .unwrap()
            .unwrap();
        let plain = crypto::open(&summary_key(who), &rid.0, &sealed).unwrap();
        decbor::<Stored>(&plain).unwrap().verified
    }

    #[test]
    fn a_summary_keeps_what_its_held_chains_signatures_verified_as() {
        use crate::grant::{Ability, Grant, GrantSpec};
        let mut rng = TestRng::new(73);
        let (store, vault, patient, rid) = record(&mut rng);
        let (gp, _) = Identity::generate(Role::Professional, "GP".into(), &mut rng);
        let grant = |days: i64, rng: &mut TestRng| {
            let until = TEST_NOW.saturating_add_millis(days * 86_400_000);
            let spec = GrantSpec::new(
                gp.peer(),
                "demographics".parse().unwrap(),
                Ability::Read,
                TEST_NOW,
                until,
            );
            Grant::issue_root(&patient, spec, &[], rng).unwrap()
        };
        let first = grant(30, &mut rng);
        vault
            .hold_grant(&rid, std::slice::from_ref(&first))
            .unwrap();
        name_of(&vault, &patient, &rid, &mut rng);
        let one = kept_digests(&store, &patient, &rid);
        assert_eq!(one.len(), 32, "one link, one digest");
        // The digest is the one verifying the chain is accepted under.
        let ((), seen) = crypto::witnessing(|| {
            grant::verify_signatures(std::slice::from_ref(&first)).unwrap();
        });
        assert_eq!(seen.concat(), one);
        // Another held chain changes the fingerprint: the summary is made again, with both.
        vault.hold_grant(&rid, &[grant(60, &mut rng)]).unwrap();
        name_of(&vault, &patient, &rid, &mut rng);
        let two = kept_digests(&store, &patient, &rid);
        assert_eq!(two.len(), 64);
        assert!(two.windows(32).any(|w| w == one.as_slice()));
    }

    #[test]
    fn a_damaged_or_foreign_summary_is_never_shown() {
        let mut rng = TestRng::new(72);
        let (store, vault, patient, rid) = record(&mut rng);
        let slot = local_key(&Key::Summary(&rid).text());
        name_of(&vault, &patient, &rid, &mut rng);
        // A flipped bit: the seal does not open, the record is read again.
        let mut sealed = store.get(&slot).unwrap().unwrap();
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        let mut b = Batch::new();
        b.put(slot.clone(), sealed);
        store.commit(b).unwrap();
        assert_eq!(
            name_of(&vault, &patient, &rid, &mut rng).as_deref(),
            Some("Edith Example")
        );
        // Another record's summary moved under this one's key does not open (bound to its id).
        let (_, vault2, patient2, rid2) = record(&mut rng);
        name_of(&vault2, &patient2, &rid2, &mut rng);
        let other = vault2
            .store()
            .get(&local_key(&Key::Summary(&rid2).text()))
            .unwrap()
            .unwrap();
        assert!(crypto::open(&summary_key(&patient), &rid.0, &other).is_err());
        // Forgetting the record forgets its summary.
        vault.forget_record(&rid).unwrap();
        assert_eq!(store.get(&slot).unwrap(), None);
    }
}
