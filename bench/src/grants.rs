//! Grants (issue #3): cold verification of a three-link grant chain (decode from bytes, verify
//! every link) against ed25519 batch verification of the very same three signatures over the
//! same messages, from key bytes as a cold verifier receives them and from keys already
//! parsed, in interleaved rounds of the same run; and the same chain checked again (warm),
//! which the verifier's memo of verified signatures answers.

use crate::measure::{median, us};
use crate::report::{Figure, Report};
use anyhow::Result;
use ed25519_dalek::{Signature, VerifyingKey};
use hearth_core::crypto::{self, Domain};
use hearth_core::grant::{self, Ability, Access, Grant, GrantSpec, MAX_CHAIN, token};
use hearth_core::keys::{Identity, Role};
use hearth_core::test_utils::{TEST_NOW, TestRng};
use std::hint::black_box;
use std::time::Instant;

/// Interleaved rounds (the machine's speed drifts, and short rounds see the same drift);
/// medians reported.
const ROUNDS: usize = 20;

/// One chain's three signatures as a bare batch check takes them: the signers' keys as bytes,
/// the signed messages, the signatures.
struct Bare {
    keys: Vec<[u8; 32]>,
    messages: Vec<Vec<u8>>,
    sigs: Vec<Signature>,
}

impl Bare {
    fn of(bytes: &[u8], issuers: Vec<[u8; 32]>) -> Result<Bare> {
        let envelopes = token::decode_envelopes(bytes, MAX_CHAIN)?;
        let messages = envelopes
            .iter()
            .map(|e| crypto::domain_message(Domain::Grant, &[&e.body]))
            .collect();
        let sigs = envelopes
            .iter()
            .map(|e| Signature::from_slice(&e.sig))
            .collect::<Result<_, _>>()?;
        Ok(Bare {
            keys: issuers,
            messages,
            sigs,
        })
    }

    fn verify(&self, keys: &[VerifyingKey]) -> Result<()> {
        let refs: Vec<&[u8]> = self.messages.iter().map(Vec::as_slice).collect();
        ed25519_dalek::verify_batch(black_box(&refs), &self.sigs, keys)?;
        Ok(())
    }

    fn parsed(&self) -> Result<Vec<VerifyingKey>> {
        Ok(self
            .keys
            .iter()
            .map(|k| VerifyingKey::from_bytes(black_box(k)))
            .collect::<Result<_, _>>()?)
    }
}

/// A three-link chain (patient → trust → ward → nurse) of fresh identities, as bytes, the
/// access it is checked for, and its signatures as a bare batch check takes them. `i` varies
/// the validity, so no two chains share a signature.
fn chain(rng: &mut TestRng, i: usize) -> Result<(Vec<u8>, Access, Bare)> {
    let (patient, _) = Identity::generate(Role::Patient, "P".into(), rng);
    let (trust, _) = Identity::generate(Role::Relay, "NHS Trust".into(), rng);
    let (ward, _) = Identity::generate(Role::Relay, "Ward 7".into(), rng);
    let (nurse, _) = Identity::generate(Role::Professional, "Nurse".into(), rng);
    let day = 86_400_000;
    let until = |days: i64| TEST_NOW.saturating_add_millis(days * day + i as i64);
    let mut s0 = GrantSpec::new(
        trust.peer(),
        "notes,medications,observations".parse()?,
        Ability::Append,
        TEST_NOW,
        until(90),
    );
    s0.depth = 2;
    let g0 = Grant::issue_root(&patient, s0, &[], rng)?;
    let mut s1 = GrantSpec::new(
        ward.peer(),
        "notes,observations".parse()?,
        Ability::Append,
        TEST_NOW,
        until(30),
    );
    s1.depth = 1;
    let g1 = Grant::delegate(&g0, &trust, s1, rng)?;
    let s2 = GrantSpec::new(
        nurse.peer(),
        "observations".parse()?,
        Ability::Read,
        TEST_NOW,
        until(7),
    );
    let g2 = Grant::delegate(&g1, &ward, s2, rng)?;
    let access = Access::section(nurse.peer(), "observations".parse()?, Ability::Read);
    let issuers = [&g0, &g1, &g2].map(|g| *g.body().issuer.as_bytes());
    let bytes = grant::chain_to_bytes(&[g0, g1, g2]);
    let bare = Bare::of(&bytes, issuers.to_vec())?;
    Ok((bytes, access, bare))
}

/// Runs the module.
///
/// *Cold* means a verifier that has seen neither the chain's signatures nor its keys: each
/// check takes a chain of fresh identities never verified before in this process (the
/// verifier remembers signatures it verified, `hearth_core::crypto`). *Warm* checks the same
/// chain again, as a node does when a grantee comes back.
pub(crate) fn run(r: &mut Report, quick: bool) -> Result<()> {
    let n = if quick { 5_000 } else { 20_000 };
    let per_round = n / ROUNDS;
    let mut rng = TestRng::new(5);
    let chains = (0..per_round * ROUNDS)
        .map(|i| chain(&mut rng, i))
        .collect::<Result<Vec<_>>>()?;
    let (bytes, access, _) = &chains[0];
    let parsed = chains
        .iter()
        .map(|(_, _, bare)| bare.parsed())
        .collect::<Result<Vec<_>>>()?;

    let mut base_r = Vec::new();
    let mut cold_base_r = Vec::new();
    let mut ours_r = Vec::new();
    for (round, keys) in chains.chunks(per_round).zip(parsed.chunks(per_round)) {
        // Baseline: the same signatures in one batch, starting from keys as bytes, as a cold
        // verifier receives them.
        let t = Instant::now();
        for (_, _, bare) in round {
            bare.verify(&bare.parsed()?)?;
        }
        cold_base_r.push(per_round as f64 / t.elapsed().as_secs_f64());
        // And from keys already parsed.
        let t = Instant::now();
        for ((_, _, bare), keys) in round.iter().zip(keys) {
            bare.verify(keys)?;
        }
        base_r.push(per_round as f64 / t.elapsed().as_secs_f64());
        // Cold: decode from bytes and verify a chain never seen before, each time.
        let t = Instant::now();
        for (bytes, access, _) in round {
            let chain = grant::chain_from_bytes(black_box(bytes))?;
            grant::verify_chain(&chain, access, TEST_NOW, &|_| false)?;
        }
        ours_r.push(per_round as f64 / t.elapsed().as_secs_f64());
    }
    let (base, cold_base, ours) = (median(base_r), median(cold_base_r), median(ours_r));
    let t = Instant::now();
    for _ in 0..n {
        black_box(grant::chain_from_bytes(black_box(bytes))?);
    }
    let decode_us = us(t.elapsed()) / n as f64;
    // Warm: the first chain again (verified above), decoded and checked each time.
    let t = Instant::now();
    for _ in 0..n {
        let chain = grant::chain_from_bytes(black_box(bytes))?;
        grant::verify_chain(&chain, access, TEST_NOW, &|_| false)?;
    }
    let warm = n as f64 / t.elapsed().as_secs_f64();

    eprintln!("  (each chain is {} bytes)", bytes.len());
    r.emit(
        Figure::new("cold_chain_verify", ours, "/s")
            .baseline(cold_base)
            .target("ratio>=0.9"),
    )?;
    r.emit(Figure::new("cold_chain_verify_vs_parsed_keys", ours, "/s").baseline(base))?;
    r.emit(Figure::new("chain_decode", decode_us, "µs"))?;
    r.emit(Figure::new("warm_chain_verify", warm, "/s").baseline(cold_base))
}
