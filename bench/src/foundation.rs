//! Foundation (issue #2): bundle crypto against the raw primitives, a record add in memory and
//! durably on sled against sled's own insert+flush, and opening a record and reading all of it
//! against automerge loading a document of the same entries. Beside the durable add, the
//! ceiling the same run sets for it (`durable_add_ceiling`): an add that did its in-memory work
//! and then exactly one sled insert+flush.
//!
//! The notes are written a minute apart, as a record grows (entry ids begin with the time, so
//! each new key sorts after the others); the record opened is also built once more with every
//! note written in the same millisecond (`open_read_all_*_one_instant`), which scatters the
//! keys and shows what their order costs an open. Until session 28 every note here was
//! written at that one instant.

use crate::measure::{median, median_duration, ms, per_second, size_label};
use crate::report::{Figure, Report};
use anyhow::Result;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::Signer;
use hearth_core::bundle::Bundle;
use hearth_core::crypto::SymmetricKey;
use hearth_core::ids::{BundleHash, RecordId, SectionId};
use hearth_core::keys::{Identity, Role, signing_key};
use hearth_core::record::{NewRecord, Vault};
use hearth_core::section::SectionName;
use hearth_core::store::MemoryStore;
use hearth_core::test_utils::{TEST_NOW, TestRng, patient_record};
use hearth_node::sled_store::SledStore;
use serde_json::json;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// How much each part does.
struct Sizes {
    /// Adds per round.
    adds: usize,
    /// Interleaved rounds of durable adds and the sled baseline.
    rounds: usize,
    /// Entries in the record that is opened.
    entries: usize,
    /// Openings of it.
    runs: usize,
    /// Seals and opens of a bundle.
    crypto: usize,
}

/// Runs the module.
pub(crate) fn run(r: &mut Report, quick: bool) -> Result<()> {
    let s = if quick {
        Sizes {
            adds: 300,
            rounds: 5,
            entries: 2_000,
            runs: 5,
            crypto: 2_000,
        }
    } else {
        Sizes {
            adds: 1_000,
            rounds: 5,
            entries: 10_000,
            runs: 5,
            crypto: 20_000,
        }
    };
    bundle_crypto(r, s.crypto)?;
    durable_add(r, s.adds, s.rounds)?;
    open_record(r, s.entries, s.runs, Written::OverTime)?;
    open_record(r, s.entries, s.runs, Written::AtOneInstant)
}

/// When the notes of a record built here were written: the time each entry id begins with
/// (`EntryId::generate_at`), which decides where its key falls in the section's document.
#[derive(Clone, Copy, PartialEq)]
enum Written {
    /// A note a minute, as a record grows ([`crate::sync::minute`]): each key sorts after the
    /// ones before, so the document grows at its end.
    OverTime,
    /// All in one millisecond, in the order of the adds: each key falls at random among the
    /// old ones (ids of one instant differ only in their random bits). No node writes a
    /// record so (a person's adds are milliseconds apart, and a bulk writer sorts the ids it
    /// draws, `EntryWriter::expect`); measured to show what the order of keys costs.
    AtOneInstant,
}

impl Written {
    /// When the `i`th note was written.
    fn at(self, i: usize) -> hearth_core::time::Timestamp {
        match self {
            Written::OverTime => crate::sync::minute(i),
            Written::AtOneInstant => TEST_NOW,
        }
    }
}

/// About 200 bytes of text, like a short clinical note.
fn note(i: usize) -> serde_json::Value {
    json!({"text": format!("{i:06} Reviewed at home. Mobility stable, eating well, no new falls. Daughter present; \
        discussed respite options and medication timing. Plan: review in two weeks, sooner if concerned.")})
}

/// Baseline: sled's own insert + flush per write, values of a typical bundle's size.
fn sled_flush_rate(n: usize) -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let db = sled::Config::new()
        .path(dir.path())
        .flush_every_ms(None)
        .open()?;
    let value = vec![7u8; 520];
    let t = Instant::now();
    for i in 0..n {
        db.insert((i as u64).to_be_bytes(), value.as_slice())?;
        db.flush()?;
    }
    Ok(per_second(n, t.elapsed()))
}

/// `n` durable adds of a note to a record on sled, per second (a note a minute, as a record
/// grows).
fn hearth_add_rate(n: usize, seed: u64) -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let mut rng = TestRng::new(seed);
    let vault = Vault::open(SledStore::open(dir.path())?)?;
    let (id, rid) = patient_record(&vault, "Bench", TEST_NOW, &mut rng);
    let mut rec = vault.open_record(&id, &rid)?;
    let notes: SectionName = "notes".parse()?;
    let bodies: Vec<_> = (0..n).map(note).collect();
    let t = Instant::now();
    for (i, b) in bodies.iter().enumerate() {
        rec.add_entry(&notes, b, Written::OverTime.at(i), &mut rng)?;
    }
    Ok(per_second(n, t.elapsed()))
}

/// Durable adds against sled's insert+flush rate, interleaved over several rounds (the disk's
/// speed drifts), medians reported; beside them, the ceiling the same run sets: the rate of an
/// add whose work is the in-memory add (no I/O) followed by exactly one sled insert+flush.
fn durable_add(r: &mut Report, n: usize, rounds: usize) -> Result<()> {
    let mut ours = Vec::new();
    let mut base = Vec::new();
    let mut memory = Vec::new();
    for round in 0..rounds {
        base.push(sled_flush_rate(n)?);
        ours.push(hearth_add_rate(n, round as u64)?);
        memory.push(in_memory_add_rate(n, round as u64)?);
    }
    let (base, memory) = (median(base), median(memory));
    r.emit(
        Figure::new("durable_add", median(ours), "/s")
            .baseline(base)
            .target("ratio>=0.8"),
    )?;
    r.emit(Figure::new("add_in_memory", memory, "/s"))?;
    // Seconds per add: the in-memory work plus one insert+flush.
    let ceiling = 1.0 / (1.0 / memory + 1.0 / base);
    r.emit(Figure::new("durable_add_ceiling", ceiling, "/s").baseline(base))
}

/// `n` adds of a note to a record in the in-memory store (no I/O), per second (a note a
/// minute): where an add's time goes before the disk.
fn in_memory_add_rate(n: usize, seed: u64) -> Result<f64> {
    let mut rng = TestRng::new(seed.wrapping_add(9));
    let vault = Vault::new(MemoryStore::new());
    let (id, rid) = patient_record(&vault, "Bench", TEST_NOW, &mut rng);
    let mut rec = vault.open_record(&id, &rid)?;
    let notes: SectionName = "notes".parse()?;
    let bodies: Vec<_> = (0..n).map(note).collect();
    let t = Instant::now();
    for (i, b) in bodies.iter().enumerate() {
        rec.add_entry(&notes, b, Written::OverTime.at(i), &mut rng)?;
    }
    Ok(per_second(n, t.elapsed()))
}

/// Opening a record of `n` notes on sled, and opening it and reading every note, `runs` times;
/// against automerge loading a saved document of the same entries from memory. For a record
/// written at one instant, only the second, under its own name (`…_one_instant`, no target).
fn open_record(r: &mut Report, n: usize, runs: usize, written: Written) -> Result<()> {
    use automerge::transaction::Transactable;
    let dir = tempfile::tempdir()?;
    let mut rng = TestRng::new(2);
    let (id, _) = Identity::generate(Role::Patient, "Bench".into(), &mut rng);
    let notes: SectionName = "notes".parse()?;
    let rid = {
        let vault = Vault::open(SledStore::open(dir.path())?)?;
        let rid = vault.create_record(&id, NewRecord::default(), TEST_NOW, &mut rng)?;
        let mut rec = vault.open_record(&id, &rid)?;
        for i in 0..n {
            rec.add_entry(&notes, &note(i), written.at(i), &mut rng)?;
        }
        rid
    };
    let mut open = Vec::new();
    let mut open_read = Vec::new();
    let mut automerge_load = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let vault = Vault::open(SledStore::open(dir.path())?)?;
        let mut rec = vault.open_record(&id, &rid)?;
        let t_open = t.elapsed();
        let view = rec.show(&notes)?;
        let t_read = t.elapsed();
        anyhow::ensure!(view.entries.len() == n, "the record holds every note");
        open.push(t_open);
        open_read.push(t_read);
        // Baseline: automerge loading a document of the same entries from bytes in memory.
        let mut doc = automerge::AutoCommit::new();
        for e in &view.entries {
            doc.put(
                automerge::ROOT,
                format!("e/{}", e.id),
                serde_json::to_string(&e.body)?,
            )?;
        }
        let bytes = doc.save();
        let t = Instant::now();
        black_box(automerge::AutoCommit::load(&bytes)?);
        automerge_load.push(t.elapsed());
    }
    let size = size_label(n);
    if written == Written::AtOneInstant {
        return r.emit(
            Figure::new(
                format!("open_read_all_{size}_one_instant"),
                ms(median_duration(open_read)),
                "ms",
            )
            .baseline(ms(median_duration(automerge_load))),
        );
    }
    r.emit(Figure::new(
        format!("open_{size}"),
        ms(median_duration(open)),
        "ms",
    ))?;
    r.emit(
        Figure::new(
            format!("open_read_all_{size}"),
            ms(median_duration(open_read)),
            "ms",
        )
        .baseline(ms(median_duration(automerge_load)))
        .target("value<100.0"),
    )
}

/// Sealing (encrypt + sign) and opening (decode, verify, decrypt) a bundle of 1 KiB, against
/// raw XChaCha20-Poly1305 and ed25519 on the same sizes.
fn bundle_crypto(r: &mut Report, n: usize) -> Result<()> {
    let mut rng = TestRng::new(3);
    let author = signing_key(&mut rng);
    let key = SymmetricKey::generate(&mut rng);
    let payload = vec![42u8; 1024];
    let cipher = XChaCha20Poly1305::new(&(*key.as_bytes()).into());
    let nonce = XNonce::from([1u8; 24]);
    let aad = vec![0u8; 180];
    let per_op = |t: Instant| t.elapsed() / n as u32;
    let aead = |e| anyhow::anyhow!("raw XChaCha20-Poly1305: {e:?}");

    let t = Instant::now();
    let mut ct = Vec::new();
    for _ in 0..n {
        ct = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &payload,
                    aad: &aad,
                },
            )
            .map_err(aead)?;
    }
    let t_enc = per_op(t);
    let t = Instant::now();
    for _ in 0..n {
        black_box(
            cipher
                .decrypt(
                    &nonce,
                    Payload {
                        msg: &ct,
                        aad: &aad,
                    },
                )
                .map_err(aead)?,
        );
    }
    let t_dec = per_op(t);
    let msg = vec![0u8; 1024 + 200];
    let t = Instant::now();
    let mut sig = author.sign(&msg);
    for _ in 0..n {
        sig = author.sign(black_box(&msg));
    }
    let t_sign = per_op(t);
    let vk = author.verifying_key();
    let t = Instant::now();
    for _ in 0..n {
        vk.verify_strict(black_box(&msg), &sig)?;
    }
    let t_verify = per_op(t);

    let t = Instant::now();
    let mut sealed = Vec::with_capacity(n);
    for i in 0..n {
        sealed.push(Bundle::seal(
            RecordId([1; 32]),
            SectionId([2; 16]),
            1 + i as u64,
            (i > 0).then_some(BundleHash([3; 32])),
            0,
            TEST_NOW,
            &key,
            &payload,
            &author,
            &mut rng,
        )?);
    }
    let t_seal = per_op(t);
    // Each bundle opened once: a signature verified before would be answered from the
    // verifier's memo (`hearth_core::crypto`), which a bundle arriving from a peer never is.
    let encoded: Vec<Vec<u8>> = sealed.iter().map(|b| b.encoded().to_vec()).collect();
    drop(sealed);
    let t = Instant::now();
    for enc in &encoded {
        let d = Bundle::decode(enc)?;
        d.verify()?;
        black_box(d.open(&key)?);
    }
    let t_open = per_op(t);
    let rate = |d: Duration| 1.0 / d.as_secs_f64();
    r.emit(Figure::new("bundle_seal_1kib", rate(t_seal), "/s").baseline(rate(t_enc + t_sign)))?;
    r.emit(Figure::new("bundle_open_1kib", rate(t_open), "/s").baseline(rate(t_dec + t_verify)))
}
