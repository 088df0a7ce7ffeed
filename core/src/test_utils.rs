//! Fixtures for tests: a seeded deterministic random number generator and a fixed clock.
//!
//! Available to other crates with the `test-utils` feature. Never used by the node binary.

use crate::grant::{Ability, Grant, GrantSpec};
use crate::ids::{PeerKey, RecordId};
use crate::keys::{Identity, Role};
use crate::record::{AuthItem, NewRecord, OpenRecord, Vault};
use crate::store::Store;
use crate::time::Timestamp;
use core::convert::Infallible;
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};

/// A deterministic generator for tests: SHA-256 in counter mode over a seed. Statistically
/// fine for tests; never use it for real keys.
#[derive(Clone, Debug)]
pub struct TestRng {
    seed: u64,
    counter: u64,
    buf: [u8; 32],
    pos: usize,
}

impl TestRng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        TestRng {
            seed,
            counter: 0,
            buf: [0; 32],
            pos: 32,
        }
    }

    fn refill(&mut self) {
        let mut h = Sha256::new();
        h.update(self.seed.to_le_bytes());
        h.update(self.counter.to_le_bytes());
        self.buf = h.finalize().into();
        self.counter += 1;
        self.pos = 0;
    }
}

impl rand_core::TryRng for TestRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for byte in dst.iter_mut() {
            if self.pos == 32 {
                self.refill();
            }
            *byte = self.buf[self.pos];
            self.pos += 1;
        }
        Ok(())
    }
}

impl rand_core::TryCryptoRng for TestRng {}

/// A fixed moment used by tests: 2026-11-22T09:00:00Z.
pub const TEST_NOW: Timestamp = Timestamp::from_millis(1_795_338_000_000);

/// The FHIR fixture bundles, `shared/fixtures/fhir/*.json` beside the workspace, sorted by
/// name. Missing fixtures fail loudly: a test that silently passes on nothing proves nothing.
pub fn fhir_fixture_paths() -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/fhir");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "the FHIR fixtures are missing: expected {} (the shared/ folder beside the repository): {e}",
            dir.display()
        )
    });
    let mut files: Vec<std::path::PathBuf> = entries
        .map(|e| e.expect("read the fixtures folder").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "expected the fixture bundles in {}",
        dir.display()
    );
    files
}

/// A new patient identity called `name`, and the patient's new, empty record in `vault`
/// (created at `now`).
pub fn patient_record<S: Store>(
    vault: &Vault<S>,
    name: &str,
    now: Timestamp,
    rng: &mut impl CryptoRng,
) -> (Identity, RecordId) {
    let (patient, _) = Identity::generate(Role::Patient, name.into(), rng);
    let rid = vault
        .create_record(&patient, NewRecord::default(), now, rng)
        .expect("create the record");
    (patient, rid)
}

/// The patient's root grant to `to`: `ability` on `sections` (a spec such as `"notes"`) from
/// `now` for `days` days, recorded in the auth document of `rec` as `hearth grant` does. The
/// holder keeps it with [`Vault::hold_grant`].
#[allow(clippy::too_many_arguments)]
pub fn record_grant<S: Store>(
    patient: &Identity,
    rec: &mut OpenRecord<'_, S>,
    to: PeerKey,
    sections: &str,
    ability: Ability,
    now: Timestamp,
    days: i64,
    rng: &mut impl CryptoRng,
) -> Grant {
    let spec = GrantSpec::new(
        to,
        sections.parse().expect("a section spec"),
        ability,
        now,
        now.saturating_add_millis(days * 86_400_000),
    );
    let g = Grant::issue_root(patient, spec, &[], rng).expect("issue the grant");
    rec.put_auth(vec![AuthItem::Grant(vec![g.clone()])], now, rng)
        .expect("record the grant");
    g
}
