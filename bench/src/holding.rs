//! A professional's node holding many patients' records (issue #16: "a professional node
//! holding 10,000 records: open and list in < 1 s, memory reported").
//!
//! Each patient's record is made as a patient's device makes it (a new identity, a record with
//! a first demographics entry, a note), the patient grants the professional read access to one
//! section, `demographics`, and the real sync session then runs between the two vaults, every
//! message through the wire encoding. The professional's vault holds what that sync leaves:
//! the grant, the replica's registration, the auth document and the one section's bundles and
//! keys. It is built in memory (a few milliseconds a patient) and copied into sled on disk in
//! one go, as `sync` does, because a node that took its records in one by one would have
//! flushed to disk after each.
//!
//! What is measured is what `hearth patients` does (`node/src/cmd/net.rs`): open the vault,
//! and for every record held open it, name its sections, read the latest demographics name,
//! and work out the state of its held grants; then make the JSON it prints. Only unlocking
//! the keystore (a fixed Argon2 cost, the same for one record or ten thousand) and the printing
//! are left out. It runs in a fresh child process ([`probe`]) so that the memory figure sees
//! only the opening; the same-run baseline is sled alone opening the same store and reading
//! every key and value in it.

use crate::measure::{disk_usage, size_label};
use crate::probe::{self, Probe};
use crate::report::{Figure, Report};
use crate::sync::session;
use anyhow::Result;
use hearth_core::grant::Ability;
use hearth_core::keys::{Identity, Role};
use hearth_core::record::{NewRecord, Vault};
use hearth_core::section::SectionName;
use hearth_core::store::{Batch, MemoryStore, Store};
use hearth_core::test_utils::{TEST_NOW, TestRng, record_grant};
use hearth_node::app::patients::listing;
use hearth_node::sled_store::SledStore;
use serde_json::{Value, json};
use std::time::Instant;

/// The seed of the professional's identity: a child process makes the same one.
const PROFESSIONAL_SEED: u64 = 0x4845_4152_5448;

/// Children each opening is measured in; the medians are reported.
const RUNS: usize = 3;

/// Keys copied into sled per batch.
const COPY_BATCH: usize = 20_000;

/// Runs the module.
pub(crate) fn run(r: &mut Report, quick: bool) -> Result<()> {
    let n = if quick { 500 } else { 10_000 };
    let mut b = Builder::new();
    let t = Instant::now();
    b.grow_to(n)?;
    eprintln!(
        "  ({n} patients' records made, granted and synced in memory in {:.1} s)",
        t.elapsed().as_secs_f64()
    );
    let node = b.write_node()?;
    let m = node.measure()?;
    let size = size_label(n);
    r.emit(
        Figure::new(format!("open_list_{size}"), m.list.ms, "ms")
            .baseline(m.scan.ms)
            .target("value<1000.0"),
    )?;
    r.emit(Figure::new(format!("open_list_first_{size}"), m.first.ms, "ms").baseline(m.scan.ms))?;
    r.emit(
        Figure::new(format!("open_list_peak_{size}"), m.list.peak_mib, "MiB")
            .baseline(m.scan.peak_mib),
    )?;
    r.emit(
        Figure::new(
            "disk_per_record",
            node.disk_allocated as f64 / n as f64,
            "B",
        )
        .baseline(node.logical as f64 / n as f64),
    )?;
    Ok(())
}

/// The professional every holding is built for: always the same identity, so that a child
/// process can make it again from the seed.
pub(crate) fn professional() -> Identity {
    let mut rng = TestRng::new(PROFESSIONAL_SEED);
    Identity::generate(Role::Professional, "GP".into(), &mut rng).0
}

/// A professional's holdings, grown a patient at a time in memory.
pub(crate) struct Builder {
    professional: Identity,
    vault: Vault<MemoryStore>,
    rng: TestRng,
    held: usize,
}

impl Builder {
    /// A professional holding nothing yet.
    pub(crate) fn new() -> Self {
        Builder {
            professional: professional(),
            vault: Vault::new(MemoryStore::new()),
            rng: TestRng::new(PROFESSIONAL_SEED + 1),
            held: 0,
        }
    }

    /// Adds patients until the professional holds `n` records.
    pub(crate) fn grow_to(&mut self, n: usize) -> Result<()> {
        while self.held < n {
            self.add_patient(self.held)?;
            self.held += 1;
        }
        Ok(())
    }

    /// Patient `i`: a record on the patient's own (in-memory) device, a read grant of its
    /// demographics to the professional, and the sync that brings them over.
    fn add_patient(&mut self, i: usize) -> Result<()> {
        let rng = &mut self.rng;
        let device = Vault::new(MemoryStore::new());
        let name = format!("Patient {i:05}");
        let (patient, _) = Identity::generate(Role::Patient, name.clone(), rng);
        let first = NewRecord {
            demographics: Some(json!({"name": name, "birth_date": "1948-03-14"})),
        };
        let rid = device.create_record(&patient, first, TEST_NOW, rng)?;
        let mut rec = device.open_record(&patient, &rid)?;
        let notes: SectionName = "notes".parse()?;
        rec.add_entry(
            &notes,
            &json!({"text": "First visit. Not shared with the GP."}),
            TEST_NOW,
            rng,
        )?;
        let grant = record_grant(
            &patient,
            &mut rec,
            self.professional.peer(),
            "demographics",
            Ability::Read,
            TEST_NOW,
            365,
            rng,
        );
        drop(rec);
        self.vault.hold_grant(&rid, &[grant])?;
        session(&self.vault, &self.professional, &device, &patient, rid, rng)?;
        Ok(())
    }

    /// The holdings so far copied into a new sled store on disk, flushed and closed.
    pub(crate) fn write_node(&self) -> Result<Node> {
        let dir = tempfile::tempdir()?;
        let mut logical = 0;
        {
            let vault = Vault::open(SledStore::open(dir.path())?)?;
            let mut batch = Batch::new();
            for (k, v) in self.vault.store().scan(&[], &[0xff; 4])? {
                logical += k.len() + v.len();
                batch.put(k, v);
                if batch.ops().len() == COPY_BATCH {
                    vault.store().commit(std::mem::take(&mut batch))?;
                }
            }
            vault.store().commit(batch)?;
            vault.store().flush()?;
        }
        let (_, disk_allocated) = disk_usage(dir.path())?;
        Ok(Node {
            dir,
            records: self.held,
            logical: logical as u64,
            disk_allocated,
        })
    }
}

/// A professional's node on disk, closed.
pub(crate) struct Node {
    /// The store's folder.
    dir: tempfile::TempDir,
    /// The records it holds.
    pub(crate) records: usize,
    /// The bytes of its keys and values.
    pub(crate) logical: u64,
    /// The bytes its files take on disk.
    pub(crate) disk_allocated: u64,
}

/// Opening a node: listing its records, and sled alone reading all of it.
pub(crate) struct Opened {
    /// The node's first listing as `hearth patients` makes it (every record opened, its
    /// summary stored).
    pub(crate) first: probe::Sample,
    /// Open and list as `hearth patients` does, after the first listing.
    pub(crate) list: probe::Sample,
    /// sled alone: open and read every key and value.
    pub(crate) scan: probe::Sample,
}

impl Node {
    /// Opening the node and listing its records against sled reading it all, each in fresh
    /// child processes, alternately.
    pub(crate) fn measure(&self) -> Result<Opened> {
        let dir = self.dir.path().to_path_buf();
        let list = Probe::List {
            dir: dir.clone(),
            expect: self.records,
        };
        let scan = Probe::Scan { dir };
        // The node's first listing opens every record and stores its summary of each; the
        // listings after it read the summaries (`hearth_core::record::summary`).
        let first = probe::measure(&list, 1)?;
        let (mut lists, mut scans) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            scans.push(probe::measure(&scan, 1)?);
            lists.push(probe::measure(&list, 1)?);
        }
        Ok(Opened {
            first,
            list: probe::median_sample(lists),
            scan: probe::median_sample(scans),
        })
    }
}

/// What `hearth patients` lists (`node/src/cmd/net.rs`, `patients`), as the JSON it prints,
/// made by the same function ([`listing`]): every record `vault` holds but `who`'s own, with
/// its sections, the patient's name where the demographics are readable, and the held grants'
/// states (by [`TEST_NOW`], the clock the grants were issued by).
pub(crate) fn list(vault: &Vault<SledStore>, who: &Identity) -> Result<Value> {
    let mut rng = TestRng::new(1);
    let patients = listing(vault, who, who.record_id(), TEST_NOW, &mut rng)?;
    Ok(json!({ "patients": patients }))
}
