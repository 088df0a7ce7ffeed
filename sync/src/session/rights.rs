//! What a peer may hold and write in a record, as this node can verify it: a patient device
//! everything; a grantee what its verified chains allow; revocations it is told of.

use super::*;
use crate::protocol::EmergencyClaim;
use hearth_core::audit::EmergencyMark;
use hearth_core::grant::emergency::{self, EmergencyUse, LoggedUse};
use hearth_core::grant::request::Credential;

/// What a peer may hold and write in a record, as this node can verify it.
pub(super) struct PeerRights {
    pub(super) device: bool,
    pub(super) scopes: Vec<Scope>,
    /// The grant (last link) and purpose of the first chain that verified, for the audit.
    pub(super) authority: Option<Authority>,
    /// Set when the rights come from an emergency use, not a grant.
    pub(super) emergency: Option<EmergencyMark>,
}

impl PeerRights {
    /// A patient device's: everything.
    pub(super) const DEVICE: PeerRights = PeerRights {
        device: true,
        scopes: Vec::new(),
        authority: None,
        emergency: None,
    };

    pub(super) fn may_read(
        &self,
        sid: &SectionId,
        dir: &BTreeMap<SectionId, hearth_core::section::SectionName>,
    ) -> bool {
        if self.device {
            return true;
        }
        if *sid == SectionId::AUTH {
            // Only scopes that carry keys (read and above: never `relay`) open the auth
            // document, the same rule as every key wrap ([`grant::key_sections`]).
            return self.scopes.iter().any(|s| s.ability.carries_keys());
        }
        dir.get(sid)
            .is_some_and(|n| self.scopes.iter().any(|s| s.allows(n, Ability::Read)))
    }

    pub(super) fn may_write(
        &self,
        sid: &SectionId,
        dir: &BTreeMap<SectionId, hearth_core::section::SectionName>,
    ) -> bool {
        self.device
            || dir
                .get(sid)
                .is_some_and(|n| self.scopes.iter().any(|s| s.allows(n, Ability::Append)))
    }
}

/// What `remote`, not a patient device, may do in `record` by `chains` (each verified at
/// `now`, none of `revoked`), with the reason the last unusable chain was refused.
pub(super) fn grantee_rights(
    record: &RecordId,
    remote: &PeerKey,
    chains: &[Vec<Grant>],
    revoked: &[GrantId],
    now: Timestamp,
) -> (PeerRights, Option<String>) {
    let mut scopes = Vec::new();
    let mut last_refusal = None;
    let mut authority = None;
    for chain in chains {
        match grant::verify_chain(chain, &Access::any(*remote), now, &|g| revoked.contains(g)) {
            Ok(r) if r.record == *record => {
                if authority.is_none()
                    && let Some(grant) = r.chain.last()
                {
                    authority = Some(Authority {
                        grant: *grant,
                        purpose: r.purpose,
                    });
                }
                scopes.extend(r.scopes)
            }
            Ok(_) => last_refusal = Some("a grant for another record".to_string()),
            Err(e) => last_refusal = Some(e.to_string()),
        }
    }
    (
        PeerRights {
            device: false,
            scopes,
            authority,
            emergency: None,
        },
        last_refusal,
    )
}

impl<'a, S: Store> Local<'a, S> {
    /// The sections `remote` could once append to by a grant recorded in the auth document
    /// that has since expired or been revoked: the device holding the record root still pulls
    /// its writes from there, so that a write made while the grant was valid reaches the
    /// patient's review ([`hearth_core::record::HeldWrite`]) rather than staying on the
    /// grantee's node. Such a peer is told only the version vectors of those sections.
    pub(super) fn past_append_sections(
        rec: &OpenRecord<'_, S>,
        remote: &PeerKey,
    ) -> BTreeSet<SectionId> {
        let chains: Vec<Vec<Grant>> = rec
            .recorded_chains()
            .into_iter()
            .filter(|c| c.last().is_some_and(|l| l.body().audience == *remote))
            .collect();
        if chains.is_empty() {
            return BTreeSet::new();
        }
        rec.directory()
            .iter()
            .filter(|(sid, _)| !sid.is_reserved())
            .filter(|(_, name)| {
                chains.iter().any(|c| {
                    // Judged at the start of the chain's validity, revocations aside: was this
                    // ever an append grant of `remote` for the section?
                    c.iter()
                        .map(|g| g.body().not_before)
                        .max()
                        .is_some_and(|start| {
                            grant::verify_chain(
                                c,
                                &Access::section(*remote, **name, Ability::Append),
                                start,
                                &|_| false,
                            )
                            .is_ok()
                        })
                })
            })
            .map(|(sid, _)| *sid)
            .collect()
    }

    /// What `remote` may do in `rec`, from the chains it presents (or, if `presented` is
    /// `None`, the chains recorded in the auth document for it).
    pub(super) fn rights_of(
        &self,
        rec: &OpenRecord<'_, S>,
        remote: &PeerKey,
        presented: Option<&[ByteBuf]>,
        now: Timestamp,
    ) -> (PeerRights, Option<String>) {
        if rec.is_device(remote) {
            return (PeerRights::DEVICE, None);
        }
        let revoked = rec.revoked_grants();
        let chains: Vec<Vec<Grant>> = match presented {
            Some(bytes) => bytes
                .iter()
                .filter_map(|b| grant::chain_from_bytes(b).ok())
                .collect(),
            None => rec.recorded_chains(),
        };
        grantee_rights(&rec.id(), remote, &chains, &revoked, now)
    }

    /// What an emergency use `claim` presented by `remote` allows in `rec` at `now`: the
    /// arranged sections, read, until the use ends; or why not.
    pub(super) fn emergency_rights(
        &self,
        rec: &OpenRecord<'_, S>,
        remote: &PeerKey,
        claim: &EmergencyClaim,
        now: Timestamp,
    ) -> Result<PeerRights, String> {
        let use_ = EmergencyUse::from_token(&claim.token).map_err(|e| e.to_string())?;
        let credential = Credential::from_token(&claim.credential).map_err(|e| e.to_string())?;
        let logged = match &claim.logged {
            Some(l) => Some(LoggedUse::from_token(l).map_err(|e| e.to_string())?),
            None => None,
        };
        let arrangement = rec.arrangements(now).remove(&use_.body().org);
        let allowed = emergency::check_use(
            &use_,
            Some(&credential),
            logged.as_ref(),
            remote,
            &rec.id(),
            arrangement.as_ref(),
            now,
        )
        .map_err(|e| e.to_string())?;
        Ok(PeerRights {
            device: false,
            scopes: allowed.scopes,
            authority: Some(Authority {
                grant: GrantId(serde_bytes::ByteArray::new(use_.hash())),
                purpose: grant::Purpose::Emergency,
            }),
            emergency: Some(EmergencyMark {
                use_id: serde_bytes::ByteArray::new(use_.hash()),
                org: use_.body().org,
                reason: use_.body().reason.clone(),
                until: allowed.until,
                credential: claim.credential.clone(),
                signed_use: None,
            }),
        })
    }

    /// The signed revocations of grants in the chains `remote` presented: only chains that
    /// verify (revocation aside) for this record with `remote` as their audience, so nobody
    /// learns of others' grants.
    pub(super) fn revocations_for(
        &self,
        rec: &OpenRecord<'_, S>,
        remote: &PeerKey,
        presented: &[ByteBuf],
        now: Timestamp,
    ) -> Vec<ByteBuf> {
        let items = rec.revocations();
        if items.is_empty() {
            return Vec::new();
        }
        let mut out: Vec<ByteBuf> = Vec::new();
        for bytes in presented.iter().take(MAX_GRANTS) {
            let Ok(chain) = grant::chain_from_bytes(bytes) else {
                continue;
            };
            if chain.last().is_none_or(|l| l.body().audience != *remote)
                || chain.first().is_none_or(|r| r.body().record != rec.id())
            {
                continue;
            }
            match grant::verify_chain(&chain, &Access::any(*remote), now, &|_| false) {
                Ok(_) | Err(Refusal::Expired { .. }) | Err(Refusal::NotYetValid { .. }) => {}
                Err(_) => continue,
            }
            for g in &chain {
                let Some(item) = items.get(&g.id()) else {
                    continue;
                };
                if let Some(r) = item.revocation(self.identity, &rec.id(), &g.id()) {
                    let b = ByteBuf::from(r.to_bytes());
                    if !out.contains(&b) {
                        out.push(b);
                    }
                }
            }
        }
        out
    }

    /// Grantee side: keeps the revocations a responder sent that are signed by the record root
    /// and name a grant of this node's own chains for `record`; others are ignored.
    pub(super) fn learn_revocations(&self, record: &RecordId, revocations: &[ByteBuf]) {
        if revocations.is_empty() {
            return;
        }
        let mine: BTreeSet<GrantId> = self
            .held_chains(record)
            .unwrap_or_default()
            .iter()
            .filter_map(|b| grant::chain_from_bytes(b).ok())
            .flatten()
            .map(|g| g.id())
            .collect();
        for b in revocations {
            if let Some(r) = Revocation::from_bytes(b)
                && r.record == *record
                && mine.contains(&r.grant)
            {
                // A failed write is learnt again at the next refusal.
                let _ = self.vault.learn_revocation(&r);
            }
        }
    }

    /// The sections of `record` that `remote` may hold, by what this node can verify (a
    /// patient device: every section; a grantee: what its recorded grants let it read, and
    /// the auth document; anyone else: none).
    pub fn holdable_by(
        &self,
        record: &RecordId,
        remote: &PeerKey,
        now: Timestamp,
    ) -> Result<BTreeSet<SectionId>, SyncError> {
        let mut all = self.holdable_by_many(record, std::slice::from_ref(remote), now)?;
        Ok(all.remove(remote).unwrap_or_default())
    }

    /// [`Local::holdable_by`] for each of `peers`, opening the record once: every peer of
    /// `peers` is a key of the result (with no sections if it may hold none).
    pub fn holdable_by_many(
        &self,
        record: &RecordId,
        peers: &[PeerKey],
        now: Timestamp,
    ) -> Result<BTreeMap<PeerKey, BTreeSet<SectionId>>, SyncError> {
        let rec = self.vault.open_record(self.identity, record)?;
        self.holdable_in(&rec, peers, now)
    }

    /// [`Local::holdable_by_many`] in a record already open.
    pub(super) fn holdable_in(
        &self,
        rec: &OpenRecord<'_, S>,
        peers: &[PeerKey],
        now: Timestamp,
    ) -> Result<BTreeMap<PeerKey, BTreeSet<SectionId>>, SyncError> {
        let record = &rec.id();
        let devices: BTreeSet<PeerKey> = rec.device_peers().into_iter().collect();
        let revoked = rec.revoked_grants();
        let chains = rec.recorded_chains();
        let dir = rec.directory();
        // Every section any peer could hold, read only if some peer may hold anything.
        let mut candidates: Option<BTreeSet<SectionId>> = None;
        let mut out = BTreeMap::new();
        for peer in peers {
            let rights = if devices.contains(peer) {
                PeerRights::DEVICE
            } else {
                grantee_rights(&rec.id(), peer, &chains, &revoked, now).0
            };
            if !rights.device && rights.scopes.is_empty() {
                out.insert(*peer, BTreeSet::new());
                continue;
            }
            let candidates = match &mut candidates {
                Some(c) => c,
                None => candidates.insert(
                    self.vault
                        .held_sections(record)?
                        .into_keys()
                        .chain(dir.keys().copied())
                        .chain([SectionId::AUTH, SectionId::LEDGER])
                        .collect(),
                ),
            };
            let may = candidates
                .iter()
                .filter(|s| rights.may_read(s, dir))
                .copied()
                .collect();
            out.insert(*peer, may);
        }
        Ok(out)
    }
}
