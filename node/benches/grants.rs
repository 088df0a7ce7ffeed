//! Cold verification of a three-link grant chain against the rate at which ed25519 batch
//! verification checks three signatures, measured in the same run.
//!
//! Run: `cargo bench -p hearth-node --bench grants`
#![allow(clippy::unwrap_used)] // a benchmark: any failure should stop it loudly

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hearth_core::grant::{self, Ability, Access, Grant, GrantSpec};
use hearth_core::keys::{Identity, Role};
use hearth_core::test_utils::{TEST_NOW, TestRng};
use std::hint::black_box;
use std::time::Instant;

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let n = if quick { 2_000 } else { 20_000 };
    let mut rng = TestRng::new(5);
    let (patient, _) = Identity::generate(Role::Patient, "P".into(), &mut rng);
    let (trust, _) = Identity::generate(Role::Relay, "NHS Trust".into(), &mut rng);
    let (ward, _) = Identity::generate(Role::Relay, "Ward 7".into(), &mut rng);
    let (nurse, _) = Identity::generate(Role::Professional, "Nurse".into(), &mut rng);
    let day = 86_400_000;
    let mut s0 = GrantSpec::new(
        trust.peer(),
        "notes,medications,observations".parse().unwrap(),
        Ability::Append,
        TEST_NOW,
        TEST_NOW.saturating_add_millis(90 * day),
    );
    s0.depth = 2;
    let g0 = Grant::issue_root(&patient, s0, &[], &mut rng).unwrap();
    let mut s1 = GrantSpec::new(
        ward.peer(),
        "notes,observations".parse().unwrap(),
        Ability::Append,
        TEST_NOW,
        TEST_NOW.saturating_add_millis(30 * day),
    );
    s1.depth = 1;
    let g1 = Grant::delegate(&g0, &trust, s1, &mut rng).unwrap();
    let s2 = GrantSpec::new(
        nurse.peer(),
        "observations".parse().unwrap(),
        Ability::Read,
        TEST_NOW,
        TEST_NOW.saturating_add_millis(7 * day),
    );
    let g2 = Grant::delegate(&g1, &ward, s2, &mut rng).unwrap();
    let bytes = grant::chain_to_bytes(&[g0, g1, g2]);
    let access = Access::section(nurse.peer(), "observations".parse().unwrap(), Ability::Read);

    // Baseline: batch verification of three signatures over messages of the same size.
    let keys: Vec<SigningKey> = (0..3)
        .map(|_| hearth_core::keys::signing_key(&mut rng))
        .collect();
    let msgs: Vec<Vec<u8>> = (0..3).map(|i| vec![i as u8; bytes.len() / 3]).collect();
    let sigs: Vec<Signature> = keys.iter().zip(&msgs).map(|(k, m)| k.sign(m)).collect();
    let vks: Vec<VerifyingKey> = keys.iter().map(SigningKey::verifying_key).collect();
    let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
    // Interleaved rounds (the machine's speed drifts); medians reported.
    let key_bytes: Vec<[u8; 32]> = vks.iter().map(VerifyingKey::to_bytes).collect();
    let mut base_r = Vec::new();
    let mut cold_base_r = Vec::new();
    let mut ours_r = Vec::new();
    for _ in 0..5 {
        // The same batch check starting from keys as bytes, as a cold verifier receives them.
        let t = Instant::now();
        for _ in 0..n / 5 {
            let vks: Vec<VerifyingKey> = key_bytes
                .iter()
                .map(|k| VerifyingKey::from_bytes(black_box(k)).unwrap())
                .collect();
            ed25519_dalek::verify_batch(black_box(&refs), &sigs, &vks).unwrap();
        }
        cold_base_r.push((n / 5) as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        for _ in 0..n / 5 {
            ed25519_dalek::verify_batch(black_box(&refs), &sigs, &vks).unwrap();
        }
        base_r.push((n / 5) as f64 / t.elapsed().as_secs_f64());
        // Cold: decode from bytes and verify the whole chain each time.
        let t = Instant::now();
        for _ in 0..n / 5 {
            let chain = grant::chain_from_bytes(black_box(&bytes)).unwrap();
            grant::verify_chain(&chain, &access, TEST_NOW, &|_| false).unwrap();
        }
        ours_r.push((n / 5) as f64 / t.elapsed().as_secs_f64());
    }
    let med = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (base, cold_base, ours) = (med(base_r), med(cold_base_r), med(ours_r));
    let t = Instant::now();
    for _ in 0..n {
        black_box(grant::chain_from_bytes(black_box(&bytes)).unwrap());
    }
    let decode_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let chain = grant::chain_from_bytes(&bytes).unwrap();
    let t = Instant::now();
    for _ in 0..n {
        grant::verify_chain(black_box(&chain), &access, TEST_NOW, &|_| false).unwrap();
    }
    let verify_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!(
        "hearth grant benchmarks ({})",
        if quick { "quick" } else { "full" }
    );
    println!(
        "cold 3-link chain decode+verify {ours:>9.0} /s   batch verify of 3 signatures {base:>9.0} /s   ratio {:.2} (target >= 0.80; chain is {} bytes)",
        ours / base,
        bytes.len()
    );
    println!(
        "  against batch verify of 3 signatures with keys parsed from bytes {cold_base:>9.0} /s   ratio {:.2}",
        ours / cold_base
    );
    println!(
        "  of which decode {decode_us:.1} µs, verify {verify_us:.1} µs; 3 batch-verified signatures {:.1} µs",
        1e6 / base
    );
}
