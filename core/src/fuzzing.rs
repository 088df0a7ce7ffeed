//! Entry points for fuzzing every decoder and verifier. The cargo-fuzz targets in `fuzz/` call
//! these with the fuzzer's bytes; [`mutation_run`] drives them on stable Rust (CI) with a
//! seeded mutator over valid inputs, so the same code is exercised without nightly.
//!
//! Each entry point must never panic, whatever the input; it returns whether the input was
//! accepted, so tests can also check that mutated inputs are refused.

use crate::bundle::Bundle;
use crate::grant::request::{AccessRequest, Card, Credential};
use crate::grant::{self, Access};

/// Decodes a grant token's text and verifies the chain for its leaf audience.
pub fn grant_token(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    match grant::chain_from_token(text) {
        Ok(chain) => verify_any(&chain),
        Err(_) => false,
    }
}

/// Decodes encoded chain bytes (as stored) and verifies them.
pub fn grant_chain(data: &[u8]) -> bool {
    match grant::chain_from_bytes(data) {
        Ok(chain) => verify_any(&chain),
        Err(_) => false,
    }
}

fn verify_any(chain: &[grant::Grant]) -> bool {
    let Some(leaf) = chain.last() else {
        return false;
    };
    let at = leaf.body().not_before;
    grant::verify_chain(chain, &Access::any(leaf.body().audience), at, &|_| false).is_ok()
}

/// Decodes request, credential and card tokens.
pub fn signed_tokens(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let r = AccessRequest::from_token(text).is_ok();
    let c = Credential::from_token(text).is_ok();
    let i = Card::from_token(text).is_ok();
    r || c || i
}

/// Decodes a bundle and checks its signature.
pub fn bundle(data: &[u8]) -> bool {
    Bundle::decode(data).and_then(|b| b.verify()).is_ok()
}

/// Reads and verifies a de-identified contribution file.
pub fn contribution(data: &[u8]) -> bool {
    crate::extract::Contribution::from_file(data).is_ok()
}

/// A small deterministic mutator: flips, inserts, deletes, truncates and splices bytes.
pub fn mutate(input: &[u8], seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut v = input.to_vec();
    let rounds = 1 + (next() % 4) as usize;
    for _ in 0..rounds {
        let len = v.len().max(1);
        let at = (next() as usize) % len;
        match next() % 6 {
            0 if !v.is_empty() => v[at] ^= 1 << (next() % 8),
            1 if !v.is_empty() => v[at] = next() as u8,
            2 => v.insert(at.min(v.len()), next() as u8),
            3 if !v.is_empty() => {
                v.remove(at);
            }
            4 => v.truncate(at),
            _ => {
                let from = (next() as usize) % len;
                let n = (next() % 16) as usize;
                let chunk: Vec<u8> = v.iter().skip(from).take(n).copied().collect();
                let pos = at.min(v.len());
                v.splice(pos..pos, chunk);
            }
        }
    }
    v
}

/// What a text token means: case and whitespace are not part of it.
fn text_meaning(b: &[u8]) -> Vec<u8> {
    b.iter()
        .filter(|c| !c.is_ascii_whitespace())
        .map(u8::to_ascii_uppercase)
        .collect()
}

/// Runs `target` on `iterations` mutations of each seed input; returns how many mutated inputs
/// that mean something different from their seed were accepted. For text tokens (`text`),
/// changes of case or whitespace do not change the meaning.
pub fn mutation_run(
    target: fn(&[u8]) -> bool,
    seeds: &[Vec<u8>],
    iterations: u64,
    text: bool,
) -> u64 {
    let mut accepted = 0;
    for (i, s) in seeds.iter().enumerate() {
        for n in 0..iterations {
            let m = mutate(s, (i as u64) << 32 | n);
            let same = if text {
                text_meaning(&m) == text_meaning(s)
            } else {
                m == *s
            };
            if !same && target(&m) {
                accepted += 1;
            }
        }
    }
    accepted
}
