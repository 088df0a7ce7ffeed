//! The area's people, records and relays, and the in-process phases that put records on the
//! relays and fetch them: who registers where, who is granted what, and what each relay did.
//!
//! Organisation 0 is the acute trust (hospital specialists and A&E clinicians; its relay keeps
//! a second copy for some patients); organisations 1.. are GP practices, each with its own
//! relay, GPs, nurses and attached social workers. A patient registers with one practice (its
//! relay keeps the record) and grants read access on notes to one of the practice's GPs, and
//! perhaps a second GP, a nurse, a social worker and one or two hospital specialists (1–5
//! grantees); some also keep a copy on the trust's relay.

use crate::automerge_base::note;
use anyhow::{Context, Result, ensure};
use hearth_core::grant::{Ability, Grant, GrantSpec};
use hearth_core::ids::RecordId;
use hearth_core::keys::{Identity, Role};
use hearth_core::record::{AuthItem, Vault};
use hearth_core::section::SectionName;
use hearth_core::store::{MemoryStore, Store};
use hearth_core::test_utils::{TEST_NOW, TestRng, patient_record, record_grant};
use hearth_node::sled_store::SledStore;
use hearth_sync::protocol::{self, Message};
use hearth_sync::relay::StoreResponse;
use hearth_sync::relay::server::{RelayLimits, Served};
use hearth_sync::session::Local;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Notes in each patient's record when it is first put on its relays.
pub(super) const NOTES: usize = 3;
/// GPs of each practice.
const GPS: usize = 14;
/// Nurses (practice and district) of each practice.
const NURSES: usize = 17;
/// Social workers attached to each practice.
const SOCIAL: usize = 8;
/// Hospital specialists per 100 patients in the area.
const SPECIALISTS_PER_100: usize = 1;
/// A&E clinicians per 200 patients in the area.
const AE_PER_200: usize = 1;
/// Share of patients (per mille) who also keep a copy on the trust's relay.
const SECOND_RELAY: u64 = 300;
/// How long the grants last.
const DAYS: i64 = 365;

/// A small deterministic generator for the area's choices (splitmix64): which practice,
/// which grantees. Keys and nonces come from [`TestRng`].
pub(super) struct Pick(u64);

impl Pick {
    /// A generator for `seed`.
    pub(super) fn new(seed: u64) -> Self {
        Pick(seed)
    }

    /// The next 64 random bits.
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n` > 0).
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `per_mille` / 1000.
    pub(super) fn chance(&mut self, per_mille: u64) -> bool {
        self.next() % 1000 < per_mille
    }
}

/// What a professional does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Staff {
    /// A GP at a practice.
    Gp,
    /// A practice or district nurse.
    Nurse,
    /// A social worker attached to a practice.
    Social,
    /// A hospital specialist (the trust).
    Specialist,
    /// An A&E clinician (the trust): holds no grant, looks records up in an emergency.
    Emergency,
}

/// A professional's node.
pub(super) struct Professional {
    /// Its device key.
    pub(super) id: Identity,
    /// Its organisation (the index of that organisation's relay).
    pub(super) org: usize,
    /// What it does.
    pub(super) staff: Staff,
}

/// An organisation's relay: its identity and its sled store on disk.
pub(super) struct Relay {
    /// The relay's key.
    pub(super) id: Identity,
    /// Its store.
    pub(super) vault: Vault<SledStore>,
    /// The store's folder.
    pub(super) dir: PathBuf,
    /// Its limits (the defaults).
    pub(super) limits: RelayLimits,
}

impl Relay {
    /// Decodes `frame` from `from`, answers it as the relay does and encodes the answer
    /// ([`crate::relay::exchange`]).
    pub(super) fn exchange(
        &self,
        from: &Identity,
        frame: &[u8],
    ) -> Result<(StoreResponse, Served, usize, Duration)> {
        crate::relay::exchange(&self.vault, &self.id, &self.limits, from, frame)
    }
}

/// A patient, its record, where it is kept and who may read it.
pub(super) struct Patient {
    /// The patient's device (it holds the record root).
    pub(super) id: Identity,
    /// The record.
    pub(super) record: RecordId,
    /// The relays keeping it: its practice's first.
    pub(super) relays: Vec<usize>,
    /// Its grantees (professionals' indices).
    pub(super) grantees: Vec<usize>,
}

/// A patient whose node is kept for the fan-out measurement: its record and its grants.
pub(super) struct Kept {
    /// The patient's index.
    pub(super) patient: usize,
    /// The patient's node's store.
    pub(super) vault: Vault<MemoryStore>,
    /// Each grantee's grant.
    pub(super) grants: Vec<(usize, Grant)>,
}

/// What one relay did in a phase.
#[derive(Clone, Debug, Default)]
pub(super) struct Load {
    /// Requests answered.
    pub(super) requests: usize,
    /// The relay's own time on them (decode, answer, encode).
    pub(super) busy: Duration,
    /// Bundles stored.
    pub(super) stored: usize,
    /// Bundles sent.
    pub(super) sent: usize,
    /// Bytes of request and answer frames.
    pub(super) bytes: usize,
}

impl Load {
    fn add(&mut self, served: &Served, req: usize, resp: usize, took: Duration) {
        self.requests += 1;
        self.busy += took;
        self.stored += served.stored;
        self.sent += served.sent;
        self.bytes += req + resp;
    }
}

/// The whole area.
pub(super) struct Area {
    /// The relays; 0 is the trust's.
    pub(super) relays: Vec<Arc<Relay>>,
    /// Every professional.
    pub(super) pros: Vec<Professional>,
    /// Every patient.
    pub(super) patients: Vec<Patient>,
    /// Patients kept for the fan-out measurement.
    pub(super) kept: Vec<Kept>,
    /// Where the relays' stores live.
    dir: tempfile::TempDir,
    /// Keys and nonces.
    pub(super) rng: TestRng,
    /// The area's choices.
    pick: Pick,
}

/// A new identity of `role` called `name`.
pub(super) fn identity(role: Role, name: &str, rng: &mut TestRng) -> Identity {
    Identity::generate(role, name.into(), rng).0
}

impl Area {
    /// An empty area.
    pub(super) fn new() -> Result<Area> {
        Ok(Area {
            relays: Vec::new(),
            pros: Vec::new(),
            patients: Vec::new(),
            kept: Vec::new(),
            dir: tempfile::tempdir()?,
            rng: TestRng::new(16),
            pick: Pick::new(4),
        })
    }

    /// Professionals of `org` doing `staff`.
    fn staff_of(&self, org: Option<usize>, staff: Staff) -> Vec<usize> {
        (0..self.pros.len())
            .filter(|&i| {
                let p = &self.pros[i];
                p.staff == staff && org.is_none_or(|o| p.org == o)
            })
            .collect()
    }

    /// Adds relays (each with a new practice's staff) up to `relays`, and the trust's staff in
    /// proportion to `patients`.
    pub(super) fn grow_organisations(&mut self, relays: usize, patients: usize) -> Result<()> {
        while self.relays.len() < relays {
            let org = self.relays.len();
            let name = if org == 0 {
                "Trust relay".to_string()
            } else {
                format!("Practice {org} relay")
            };
            let dir = self.dir.path().join(format!("relay{org}"));
            self.relays.push(Arc::new(Relay {
                id: identity(Role::Relay, &name, &mut self.rng),
                vault: Vault::open(SledStore::open(&dir)?)?,
                dir,
                limits: RelayLimits::default(),
            }));
            if org > 0 {
                for (staff, n) in [
                    (Staff::Gp, GPS),
                    (Staff::Nurse, NURSES),
                    (Staff::Social, SOCIAL),
                ] {
                    for _ in 0..n {
                        self.hire(org, staff);
                    }
                }
            }
        }
        for (staff, want) in [
            (
                Staff::Specialist,
                (patients * SPECIALISTS_PER_100 / 100).max(1),
            ),
            (Staff::Emergency, (patients * AE_PER_200 / 200).max(1)),
        ] {
            while self.staff_of(Some(0), staff).len() < want {
                self.hire(0, staff);
            }
        }
        Ok(())
    }

    fn hire(&mut self, org: usize, staff: Staff) {
        let name = format!("{staff:?} {}", self.pros.len());
        self.pros.push(Professional {
            id: identity(Role::Professional, &name, &mut self.rng),
            org,
            staff,
        });
    }

    /// One of `from`, if any.
    fn one_of(&mut self, from: &[usize]) -> Option<usize> {
        (!from.is_empty()).then(|| from[self.pick.below(from.len())])
    }

    /// A new patient's practice, relays and grantees: a GP of the practice always; a second
    /// GP (20 %), a nurse (40 %), a social worker (10 %), a specialist (30 %) and a second
    /// specialist (10 %); the trust's relay too for 30 %.
    fn choose(&mut self) -> (Vec<usize>, Vec<usize>) {
        let practice = 1 + self.pick.below(self.relays.len() - 1);
        let mut relays = vec![practice];
        if self.pick.chance(SECOND_RELAY) {
            relays.push(0);
        }
        let gps = self.staff_of(Some(practice), Staff::Gp);
        let nurses = self.staff_of(Some(practice), Staff::Nurse);
        let social = self.staff_of(Some(practice), Staff::Social);
        let specialists = self.staff_of(Some(0), Staff::Specialist);
        let mut grantees = Vec::new();
        for (from, per_mille) in [
            (&gps, 1000),
            (&gps, 200),
            (&nurses, 400),
            (&social, 100),
            (&specialists, 300),
            (&specialists, 100),
        ] {
            if self.pick.chance(per_mille)
                && let Some(p) = self.one_of(from)
                && !grantees.contains(&p)
            {
                grantees.push(p);
            }
        }
        (relays, grantees)
    }

    /// Adds patients up to `target`, each record built on the patient's node, put on its
    /// relays and fetched once by each grantee from its practice's relay (the in-process
    /// phases: every frame encoded and decoded, the relay's [`Server::answer`](hearth_sync::relay::server::Server::answer) on sled).
    /// The patients whose index is in `keep` are kept for the fan-out. Returns what each
    /// relay did storing and serving, and the time building the records.
    pub(super) fn grow_patients(
        &mut self,
        target: usize,
        keep: &[usize],
    ) -> Result<(Vec<Load>, Vec<Load>, Duration)> {
        let mut stored = vec![Load::default(); self.relays.len()];
        let mut served = vec![Load::default(); self.relays.len()];
        let mut building = Duration::ZERO;
        // Each relay's access receipts, written as its daemon does: in one commit per tick,
        // or at once when 256 are waiting (timed with the serving).
        let mut receipts: Vec<Vec<_>> = vec![Vec::new(); self.relays.len()];
        let notes: SectionName = "notes".parse()?;
        while self.patients.len() < target {
            let n = self.patients.len();
            let (relays, grantees) = self.choose();
            let t = Instant::now();
            let vault = Vault::new(MemoryStore::new());
            let (patient, record) =
                patient_record(&vault, &format!("P{n}"), TEST_NOW, &mut self.rng);
            let mut grants = Vec::new();
            {
                let mut rec = vault.open_record(&patient, &record)?;
                for i in 0..NOTES {
                    rec.add_entry(&notes, &note(n * 10 + i), TEST_NOW, &mut self.rng)?;
                }
                for &r in &relays {
                    record_grant(
                        &patient,
                        &mut rec,
                        self.relays[r].id.peer(),
                        "notes",
                        Ability::Relay,
                        TEST_NOW,
                        DAYS,
                        &mut self.rng,
                    );
                }
                // Read grants carrying the notes' key, wrapped to each grantee (as `hearth
                // grant` issues them).
                for &g in &grantees {
                    let to = &self.pros[g].id;
                    let spec = GrantSpec::new(
                        to.peer(),
                        "notes".parse()?,
                        Ability::Read,
                        TEST_NOW,
                        TEST_NOW.saturating_add_millis(DAYS * 86_400_000),
                    );
                    let keys =
                        rec.wrap_keys_for(to.agreement_public(), &spec.scopes, &mut self.rng)?;
                    let grant = Grant::issue_root(&patient, spec, &keys, &mut self.rng)?;
                    rec.put_auth(
                        vec![AuthItem::Grant(vec![grant.clone()])],
                        TEST_NOW,
                        &mut self.rng,
                    )?;
                    grants.push((g, grant));
                }
            }
            building += t.elapsed();
            for &r in &relays {
                self.supply(&vault, &patient, record, r, &mut stored[r])?;
            }
            let first = relays[0];
            for &g in &grantees {
                let (req_len, resp, did, resp_len, took) =
                    fetch(&self.relays[first], &self.pros[g].id, record, &mut self.rng)?;
                ensure!(
                    !resp.bundles.is_empty() && !resp.more,
                    "the relay served the whole record at once"
                );
                served[first].add(&did, req_len, resp_len, took);
                receipts[first].extend(did.receipt);
                if receipts[first].len() >= 256 {
                    served[first].busy += self.write_receipts(first, &mut receipts[first])?;
                }
            }
            self.patients.push(Patient {
                id: patient,
                record,
                relays,
                grantees,
            });
            if keep.contains(&n) {
                self.kept.push(Kept {
                    patient: n,
                    vault,
                    grants,
                });
            }
        }
        for (r, pending) in receipts.iter_mut().enumerate() {
            served[r].busy += self.write_receipts(r, pending)?;
        }
        Ok((stored, served, building))
    }

    /// Writes relay `r`'s waiting access receipts in one commit; returns the time taken.
    fn write_receipts(
        &self,
        r: usize,
        pending: &mut Vec<(RecordId, hearth_core::audit::Action)>,
    ) -> Result<Duration> {
        let relay = &self.relays[r];
        let t = Instant::now();
        relay
            .vault
            .journal_many(&relay.id, std::mem::take(pending), TEST_NOW)?;
        Ok(t.elapsed())
    }

    /// The patient's node supplies relay `r`: the first request (access list, wraps, what it
    /// holds), then pushes until the relay holds everything.
    fn supply(
        &mut self,
        vault: &Vault<MemoryStore>,
        patient: &Identity,
        record: RecordId,
        r: usize,
        load: &mut Load,
    ) -> Result<()> {
        let relay = &self.relays[r];
        let local = Local::new(vault, patient);
        let relay_peer = relay.id.peer();
        let mut req = Some(local.relay_start(record, relay_peer, TEST_NOW, &mut self.rng)?);
        while let Some(q) = req.take() {
            let frame = protocol::encode(&Message::Store(q));
            let (resp, did, resp_len, took) = relay.exchange(patient, &frame)?;
            load.add(&did, frame.len(), resp_len, took);
            req = local
                .on_relay_response(relay_peer, record, resp, TEST_NOW, &mut self.rng)?
                .0;
        }
        Ok(())
    }

    /// Bytes each relay's store holds (keys and values).
    pub(super) fn stored_bytes(&self) -> Result<Vec<u64>> {
        self.relays
            .iter()
            .map(|r| {
                let all = r.vault.store().scan(&[], &[0xff; 4])?;
                Ok(all.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum())
            })
            .collect()
    }

    /// Bytes the relays' sled folders take on disk, per relay.
    pub(super) fn disk(&self) -> Result<Vec<u64>> {
        self.relays
            .iter()
            .map(|r| {
                r.vault.store().flush()?;
                disk_usage(&r.dir)
            })
            .collect()
    }
}

/// A grantee with an empty store fetches `record` from `relay`: (request size, answer, what
/// the relay did, answer size, the relay's time).
fn fetch(
    relay: &Relay,
    grantee: &Identity,
    record: RecordId,
    rng: &mut TestRng,
) -> Result<(usize, StoreResponse, Served, usize, Duration)> {
    let empty = Vault::new(MemoryStore::new());
    let local = Local::new(&empty, grantee);
    let req = local.relay_start(record, relay.id.peer(), TEST_NOW, rng)?;
    let frame = protocol::encode(&Message::Store(req));
    let (resp, did, resp_len, took) = relay.exchange(grantee, &frame)?;
    Ok((frame.len(), resp, did, resp_len, took))
}

/// Apparent bytes of the files under `dir`.
fn disk_usage(dir: &std::path::Path) -> Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let e = e?;
        let m = e.metadata()?;
        total += if m.is_dir() {
            disk_usage(&e.path())?
        } else {
            m.len()
        };
    }
    Ok(total)
}
