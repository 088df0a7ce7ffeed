//! Fuzzing every decoder and verifier. The cargo-fuzz targets in `fuzz/` call the entry points
//! in [`targets`] with the fuzzer's bytes; on stable Rust (CI) the same entry points run over
//! the committed corpus (`fuzz/corpus/<target>/`), a seeded mutator ([`mutation_run`]) and
//! every single-bit flip of each valid input ([`Target::hostile_run`]), so the code the fuzzer reaches
//! is exercised without nightly. `hearth-sync` and `hearth-node` add their own targets (sync
//! frames, relay frames, pairing messages, API bodies) in the same [`Target`] form.
//!
//! Each entry point must never panic, whatever the input; it returns whether the input was
//! accepted, so tests can also check that altered signed inputs are refused.

pub mod seeds;
pub mod targets;

pub use targets::*;

/// One fuzz target: a decoder (and verifier, where the input is signed) run on raw bytes.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// The name of its cargo-fuzz target and corpus folder.
    pub name: &'static str,
    /// The entry point: never panics; `true` when the input was accepted.
    pub run: fn(&[u8]) -> bool,
    /// The input's form, which says which changes keep its meaning.
    pub form: Form,
    /// Whether the input is signed: any change that alters its meaning must be refused.
    pub signed: bool,
}

/// What form an input has, which decides which of its alterations keep its meaning (an
/// altered signed input is only a failure when it means something else).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// Bytes: any change is a change.
    Binary,
    /// A text token: case and whitespace are not part of it.
    Token,
    /// A JSON file: its layout is not part of it.
    Json,
}

impl Form {
    /// Whether `a` and `b` mean the same.
    pub fn same_meaning(self, a: &[u8], b: &[u8]) -> bool {
        match self {
            Form::Binary => a == b,
            Form::Token => text_meaning(a) == text_meaning(b),
            Form::Json => {
                a == b
                    || matches!(
                        (
                            serde_json::from_slice::<serde_json::Value>(a),
                            serde_json::from_slice::<serde_json::Value>(b),
                        ),
                        (Ok(x), Ok(y)) if x == y
                    )
            }
        }
    }
}

/// The core's targets.
pub const TARGETS: &[Target] = &[
    Target {
        name: "bundle",
        run: targets::bundle,
        form: Form::Binary,
        signed: true,
    },
    Target {
        name: "grant_token",
        run: targets::grant_token,
        form: Form::Token,
        signed: true,
    },
    Target {
        name: "grant_chain",
        run: targets::grant_chain,
        form: Form::Binary,
        signed: true,
    },
    Target {
        name: "signed_tokens",
        run: targets::signed_tokens,
        form: Form::Token,
        signed: true,
    },
    Target {
        name: "audit_event",
        run: targets::audit_event,
        form: Form::Binary,
        signed: true,
    },
    Target {
        name: "revocation",
        run: targets::revocation,
        form: Form::Binary,
        signed: true,
    },
    Target {
        name: "contribution",
        run: targets::contribution,
        form: Form::Json,
        signed: true,
    },
    Target {
        name: "store_item",
        run: targets::store_item,
        form: Form::Binary,
        signed: false,
    },
    Target {
        name: "fhir_import",
        run: targets::fhir_import,
        form: Form::Binary,
        signed: false,
    },
];

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
/// that mean something different from their seed (in their `form`) were accepted.
pub fn mutation_run(
    target: fn(&[u8]) -> bool,
    seeds: &[Vec<u8>],
    iterations: u64,
    form: Form,
) -> u64 {
    let mut accepted = 0;
    for (i, s) in seeds.iter().enumerate() {
        for n in 0..iterations {
            let m = mutate(s, (i as u64) << 32 | n);
            if !form.same_meaning(&m, s) && target(&m) {
                accepted += 1;
            }
        }
    }
    accepted
}

/// What a hostile run did: how many altered inputs were tried, and how many of those that
/// mean something different from their seed were accepted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Altered inputs tried.
    pub tried: u64,
    /// Altered inputs (of a different meaning) accepted.
    pub accepted: u64,
}

impl Target {
    /// Runs every single-bit flip of each seed, then `iterations` seeded mutations of each.
    pub fn hostile_run(&self, seeds: &[Vec<u8>], iterations: u64) -> Tally {
        let mut tally = Tally::default();
        for s in seeds {
            let mut m = s.clone();
            for i in 0..m.len() {
                for bit in 0..8 {
                    m[i] ^= 1 << bit;
                    tally.tried += 1;
                    if !self.form.same_meaning(&m, s) && (self.run)(&m) {
                        tally.accepted += 1;
                    }
                    m[i] ^= 1 << bit;
                }
            }
        }
        tally.tried += iterations * seeds.len() as u64;
        tally.accepted += mutation_run(self.run, seeds, iterations, self.form);
        tally
    }
}
