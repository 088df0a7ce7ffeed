//! Per-(section, author) hash-chained logs and version vectors.
//!
//! Each author's bundles in a section form an append-only log: sequence numbers 1, 2, 3, …,
//! each bundle naming the hash of its predecessor. A section's state is therefore summarised by
//! a [`VersionVector`]: for each author, the last sequence number held and that bundle's hash.
//! Two nodes compare version vectors and send each other the missing suffixes; the hash links
//! let a receiver check that a suffix continues exactly the log it holds.
//!
//! [`check_append`] is the one place that decides whether a bundle extends a log; it detects
//! gaps, broken chains and **forks** (an author signing two different bundles with the same
//! sequence number, which an honest node never does).

use crate::bundle::BundleHeader;
use crate::ids::{BundleHash, PeerKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The newest bundle held of one author's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogHead {
    /// Its sequence number.
    pub seq: u64,
    /// Its hash.
    pub hash: BundleHash,
}

impl LogHead {
    /// Fixed 40-byte encoding for storage: seq (big-endian) then hash.
    pub fn to_bytes(&self) -> [u8; 40] {
        let mut b = [0u8; 40];
        b[..8].copy_from_slice(&self.seq.to_be_bytes());
        b[8..].copy_from_slice(&self.hash.0);
        b
    }

    /// Parses [`LogHead::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Option<LogHead> {
        if b.len() != 40 {
            return None;
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&b[..8]);
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&b[8..]);
        Some(LogHead {
            seq: u64::from_be_bytes(seq),
            hash: BundleHash(hash),
        })
    }
}

/// A section's state: for each author, the newest bundle held.
pub type VersionVector = BTreeMap<PeerKey, LogHead>;

/// What to do with a bundle offered to a log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Append {
    /// It is the next bundle of the log: store it and apply it.
    Extend,
    /// The log already holds this exact bundle: ignore it.
    Duplicate,
}

/// Why a bundle cannot extend a log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// Bundles before this one are missing; the sender should send the suffix from `expected`.
    #[error("log gap: expected seq {expected}, got {got}")]
    Gap {
        /// The next sequence number this log accepts.
        expected: u64,
        /// The sequence number offered.
        got: u64,
    },
    /// The bundle's `prev` does not name the log's head: it continues some other history.
    #[error("hash chain broken at seq {seq}")]
    BrokenChain {
        /// The sequence number offered.
        seq: u64,
    },
    /// The author signed two different bundles with the same sequence number: evidence of a
    /// misbehaving or compromised device.
    #[error("fork: author signed two different bundles at seq {seq}")]
    Fork {
        /// The contested sequence number.
        seq: u64,
    },
}

/// Decides whether the bundle with `header` and `hash` extends the log whose newest bundle is
/// `head`. When the bundle's seq is at or below the head, the caller passes the hash of the
/// bundle it already holds at that seq as `held_at_seq`.
pub fn check_append(
    head: Option<&LogHead>,
    held_at_seq: Option<BundleHash>,
    header: &BundleHeader,
    hash: BundleHash,
) -> Result<Append, LogError> {
    let held = head.map_or(0, |h| h.seq);
    if header.seq <= held {
        return match held_at_seq {
            Some(h) if h == hash => Ok(Append::Duplicate),
            _ => Err(LogError::Fork { seq: header.seq }),
        };
    }
    if header.seq != held + 1 {
        return Err(LogError::Gap {
            expected: held + 1,
            got: header.seq,
        });
    }
    if header.prev != head.map(|h| h.hash) {
        return Err(LogError::BrokenChain { seq: header.seq });
    }
    Ok(Append::Extend)
}

/// For each author, the first sequence number `ours` lacks that `theirs` has: the suffixes to
/// request. Authors we are ahead on or equal to are omitted.
pub fn missing(ours: &VersionVector, theirs: &VersionVector) -> Vec<(PeerKey, u64)> {
    theirs
        .iter()
        .filter_map(|(author, their)| {
            let have = ours.get(author).map_or(0, |h| h.seq);
            (their.seq > have).then_some((*author, have + 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::BundleKind;
    use crate::ids::{RecordId, SectionId};
    use crate::time::Timestamp;
    use proptest::prelude::*;
    use serde_bytes::ByteArray;

    fn header(seq: u64, prev: Option<BundleHash>) -> BundleHeader {
        BundleHeader {
            v: crate::bundle::BUNDLE_VERSION,
            record: RecordId([0; 32]),
            section: SectionId([1; 16]),
            author: PeerKey([2; 32]),
            seq,
            prev,
            epoch: 0,
            nonce: ByteArray::new([0; 24]),
            commit: ByteArray::new([0; 32]),
            time: Timestamp::from_millis(0),
            kind: BundleKind::Changes,
        }
    }

    fn h(n: u8) -> BundleHash {
        BundleHash([n; 32])
    }

    #[test]
    fn chain_rules() {
        // Empty log: only seq 1 without prev.
        assert_eq!(
            check_append(None, None, &header(1, None), h(1)),
            Ok(Append::Extend)
        );
        assert_eq!(
            check_append(None, None, &header(2, Some(h(1))), h(2)),
            Err(LogError::Gap {
                expected: 1,
                got: 2
            })
        );
        let head = LogHead { seq: 1, hash: h(1) };
        assert_eq!(
            check_append(Some(&head), None, &header(2, Some(h(1))), h(2)),
            Ok(Append::Extend)
        );
        assert_eq!(
            check_append(Some(&head), None, &header(2, Some(h(9))), h(2)),
            Err(LogError::BrokenChain { seq: 2 })
        );
        assert_eq!(
            check_append(Some(&head), Some(h(1)), &header(1, None), h(1)),
            Ok(Append::Duplicate)
        );
        assert_eq!(
            check_append(Some(&head), Some(h(1)), &header(1, None), h(7)),
            Err(LogError::Fork { seq: 1 })
        );
    }

    proptest! {
        /// Building a log by appending a chain in order always succeeds, and the version vector
        /// difference names exactly the suffix the other side lacks.
        #[test]
        fn in_order_chain_extends_and_missing_is_exact(n in 1u64..50, k in 0u64..50) {
            let mut head: Option<LogHead> = None;
            let mut heads = Vec::new();
            for seq in 1..=n {
                let hash = h((seq % 251) as u8);
                let hd = header(seq, head.map(|x| x.hash));
                prop_assert_eq!(check_append(head.as_ref(), None, &hd, hash), Ok(Append::Extend));
                head = Some(LogHead { seq, hash });
                heads.push(head);
            }
            let k = k.min(n);
            let mut ours = VersionVector::new();
            if k > 0 { ours.insert(PeerKey([2; 32]), LogHead { seq: k, hash: h(0) }); }
            let mut theirs = VersionVector::new();
            theirs.insert(PeerKey([2; 32]), head.unwrap());
            let m = missing(&ours, &theirs);
            if k == n { prop_assert!(m.is_empty()); } else { prop_assert_eq!(m, vec![(PeerKey([2; 32]), k + 1)]); }
        }

        #[test]
        fn log_head_bytes_round_trip(seq in any::<u64>(), hash in any::<[u8; 32]>()) {
            let lh = LogHead { seq, hash: BundleHash(hash) };
            prop_assert_eq!(LogHead::from_bytes(&lh.to_bytes()), Some(lh));
        }
    }
}
