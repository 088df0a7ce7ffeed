//! Revocations: the record root's signed statement that a grant no longer holds.

use super::body::owner_keys;
use super::{GrantId, Refusal};
use crate::crypto::{self, Domain};
use crate::ids::RecordId;
use crate::keys::Identity;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteArray;

/// The record root's signed statement that a grant is revoked from `at`. A grantee's node
/// learns the revocations of its own grants from the patient's node when it is refused, checks
/// them against the record root ([`Revocation::verify`]) and shows them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// The record.
    pub record: RecordId,
    /// The grant revoked.
    pub grant: GrantId,
    /// When it was revoked.
    pub at: Timestamp,
    /// The record root's signature over the three fields above.
    pub sig: ByteArray<64>,
}

impl Revocation {
    fn parts(record: &RecordId, grant: &GrantId, at: Timestamp) -> [Vec<u8>; 3] {
        [
            record.0.to_vec(),
            grant.0.to_vec(),
            at.as_millis().to_be_bytes().to_vec(),
        ]
    }

    /// Signs a revocation of `grant` with the record root of `patient`.
    pub fn sign(patient: &Identity, grant: GrantId, at: Timestamp) -> Result<Revocation, Refusal> {
        let (root, record) = owner_keys(patient, "only the record's owner signs revocations")?;
        let [a, b, c] = Revocation::parts(&record, &grant, at);
        let sig = crypto::sign(root, Domain::Revocation, &[&a, &b, &c]);
        Ok(Revocation {
            record,
            grant,
            at,
            sig: ByteArray::new(sig),
        })
    }

    /// Whether the record root of `record` signed it.
    pub fn verify(&self) -> bool {
        let Ok(key) = crypto::verifying_key(&self.record.0) else {
            return false;
        };
        let [a, b, c] = Revocation::parts(&self.record, &self.grant, self.at);
        crypto::verify(&key, Domain::Revocation, &[&a, &b, &c], &self.sig).is_ok()
    }

    /// Its canonical encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_ipld_dagcbor::to_vec(self).unwrap_or_default()
    }

    /// Decodes one, checking its signature.
    pub fn from_bytes(bytes: &[u8]) -> Option<Revocation> {
        if bytes.len() > 1024 {
            return None;
        }
        let r: Revocation = serde_ipld_dagcbor::from_slice(bytes).ok()?;
        r.verify().then_some(r)
    }
}
