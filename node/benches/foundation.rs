//! Foundation benchmarks. Each figure is printed beside a baseline measured in the same run,
//! because these machines are noisy; the ratio is what matters.
//!
//! Run: `cargo bench -p hearth-node --bench foundation` (add `-- quick` for a short run).

#![allow(clippy::unwrap_used)] // a benchmark: any failure should stop it loudly

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::Signer;
use hearth_core::bundle::Bundle;
use hearth_core::crypto::SymmetricKey;
use hearth_core::ids::{RecordId, SectionId};
use hearth_core::keys::{Identity, Role, signing_key};
use hearth_core::record::{NewRecord, Vault};
use hearth_core::section::SectionName;
use hearth_core::test_utils::{TEST_NOW, TestRng, patient_record};
use hearth_node::sled_store::SledStore;
use serde_json::json;
use std::hint::black_box;
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn note(i: usize) -> serde_json::Value {
    // About 200 bytes of text, like a short clinical note.
    json!({"text": format!("{i:06} Reviewed at home. Mobility stable, eating well, no new falls. Daughter present; \
        discussed respite options and medication timing. Plan: review in two weeks, sooner if concerned.")})
}

/// Baseline: sled's own insert + flush per write, values of a typical bundle's size.
fn sled_flush_rate(n: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new()
        .path(dir.path())
        .flush_every_ms(None)
        .open()
        .unwrap();
    let value = vec![7u8; 520];
    let t = Instant::now();
    for i in 0..n {
        db.insert((i as u64).to_be_bytes(), value.as_slice())
            .unwrap();
        db.flush().unwrap();
    }
    rate(n, t.elapsed())
}

fn hearth_add_rate(n: usize, seed: u64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = TestRng::new(seed);
    let vault = Vault::open(SledStore::open(dir.path()).unwrap()).unwrap();
    let (id, rid) = patient_record(&vault, "Bench", TEST_NOW, &mut rng);
    let mut rec = vault.open_record(&id, &rid).unwrap();
    let notes: SectionName = "notes".parse().unwrap();
    let bodies: Vec<_> = (0..n).map(note).collect();
    let t = Instant::now();
    for b in &bodies {
        rec.add_entry(&notes, b, TEST_NOW, &mut rng).unwrap();
    }
    rate(n, t.elapsed())
}

/// Durable adds against sled's insert+flush rate, interleaved over several rounds (the disk's
/// speed drifts), medians reported.
fn durable_add(n: usize, rounds: usize) {
    let mut ours = Vec::new();
    let mut base = Vec::new();
    for r in 0..rounds {
        base.push(sled_flush_rate(n));
        ours.push(hearth_add_rate(n, r as u64));
    }
    let med = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (ours, base) = (med(ours), med(base));
    println!(
        "durable record add          {ours:>10.0} /s   sled insert+flush baseline {base:>10.0} /s   ratio {:.2} (target >= 0.50; {n} adds, median of {rounds})",
        ours / base
    );
}

fn open_record(n: usize, runs: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = TestRng::new(2);
    let (id, _) = Identity::generate(Role::Patient, "Bench".into(), &mut rng);
    let notes: SectionName = "notes".parse().unwrap();
    let rid = {
        let vault = Vault::open(SledStore::open(dir.path()).unwrap()).unwrap();
        let rid = vault
            .create_record(&id, NewRecord::default(), TEST_NOW, &mut rng)
            .unwrap();
        let mut rec = vault.open_record(&id, &rid).unwrap();
        for i in 0..n {
            rec.add_entry(&notes, &note(i), TEST_NOW, &mut rng).unwrap();
        }
        rid
    };
    let mut open = Vec::new();
    let mut open_read = Vec::new();
    let mut automerge_load = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let vault = Vault::open(SledStore::open(dir.path()).unwrap()).unwrap();
        let mut rec = vault.open_record(&id, &rid).unwrap();
        let t_open = t.elapsed();
        let view = rec.show(&notes).unwrap();
        let t_read = t.elapsed();
        assert_eq!(view.entries.len(), n);
        open.push(t_open);
        open_read.push(t_read);
        // Baseline: automerge loading a document of the same entries from bytes in memory.
        let mut doc = automerge::AutoCommit::new();
        use automerge::transaction::Transactable;
        for e in &view.entries {
            doc.put(
                automerge::ROOT,
                format!("e/{}", e.id),
                serde_json::to_string(&e.body).unwrap(),
            )
            .unwrap();
        }
        let bytes = doc.save();
        let t = Instant::now();
        black_box(automerge::AutoCommit::load(&bytes).unwrap());
        automerge_load.push(t.elapsed());
    }
    println!(
        "open record, {n} entries    open {:>8.1} ms   open+read all {:>8.1} ms (target < 100 ms)   automerge load() of same doc {:>8.1} ms",
        median(open).as_secs_f64() * 1e3,
        median(open_read).as_secs_f64() * 1e3,
        median(automerge_load).as_secs_f64() * 1e3,
    );
}

fn bundle_crypto(n: usize) {
    let mut rng = TestRng::new(3);
    let author = signing_key(&mut rng);
    let key = SymmetricKey::generate(&mut rng);
    let payload = vec![42u8; 1024];
    // Baselines: raw XChaCha20-Poly1305 and ed25519 on the same sizes.
    let cipher = XChaCha20Poly1305::new(&(*key.as_bytes()).into());
    let nonce = XNonce::from([1u8; 24]);
    let aad = vec![0u8; 180];
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
            .unwrap();
    }
    let t_enc = t.elapsed() / n as u32;
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
                .unwrap(),
        );
    }
    let t_dec = t.elapsed() / n as u32;
    let msg = vec![0u8; 1024 + 200];
    let t = Instant::now();
    let mut sig = author.sign(&msg);
    for _ in 0..n {
        sig = author.sign(black_box(&msg));
    }
    let t_sign = t.elapsed() / n as u32;
    let vk = author.verifying_key();
    let t = Instant::now();
    for _ in 0..n {
        vk.verify_strict(black_box(&msg), &sig).unwrap();
    }
    let t_verify = t.elapsed() / n as u32;

    let t = Instant::now();
    let mut b = None;
    for i in 0..n {
        b = Some(
            Bundle::seal(
                RecordId([1; 32]),
                SectionId([2; 16]),
                1 + i as u64,
                (i > 0).then_some(hearth_core::ids::BundleHash([3; 32])),
                0,
                TEST_NOW,
                &key,
                &payload,
                &author,
                &mut rng,
            )
            .unwrap(),
        );
    }
    let t_seal = t.elapsed() / n as u32;
    let enc = b.unwrap().encoded().to_vec();
    let t = Instant::now();
    for _ in 0..n {
        let d = Bundle::decode(&enc).unwrap();
        d.verify().unwrap();
        black_box(d.open(&key).unwrap());
    }
    let t_open = t.elapsed() / n as u32;
    let base_seal = t_enc + t_sign;
    let base_open = t_dec + t_verify;
    println!(
        "bundle encrypt+sign (1 KiB) {:>10.0} /s   raw xchacha+ed25519 sign  {:>10.0} /s   ratio {:.2}",
        1.0 / t_seal.as_secs_f64(),
        1.0 / base_seal.as_secs_f64(),
        base_seal.as_secs_f64() / t_seal.as_secs_f64()
    );
    println!(
        "bundle verify+decrypt       {:>10.0} /s   raw ed25519 verify+xchacha {:>9.0} /s   ratio {:.2}",
        1.0 / t_open.as_secs_f64(),
        1.0 / base_open.as_secs_f64(),
        base_open.as_secs_f64() / t_open.as_secs_f64()
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let (adds, rounds, entries, runs, crypto) = if quick {
        (300, 3, 2_000, 3, 2_000)
    } else {
        (1_000, 5, 10_000, 5, 20_000)
    };
    println!(
        "hearth foundation benchmarks ({})",
        if quick { "quick" } else { "full" }
    );
    bundle_crypto(crypto);
    add_overhead(adds);
    durable_add(adds, rounds);
    open_record(entries, runs);
}

/// Where an add's time goes: the same adds against the in-memory store (no I/O).
fn add_overhead(n: usize) {
    let mut rng = TestRng::new(9);
    let vault = Vault::new(hearth_core::store::MemoryStore::new());
    let (id, rid) = patient_record(&vault, "Bench", TEST_NOW, &mut rng);
    let mut rec = vault.open_record(&id, &rid).unwrap();
    let notes: SectionName = "notes".parse().unwrap();
    let bodies: Vec<_> = (0..n).map(note).collect();
    let t = Instant::now();
    for b in &bodies {
        rec.add_entry(&notes, b, TEST_NOW, &mut rng).unwrap();
    }
    println!(
        "record add, in-memory store {:>10.0} /s   ({:.1} µs per add before I/O)",
        rate(n, t.elapsed()),
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
}
