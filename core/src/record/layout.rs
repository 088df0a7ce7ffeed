//! Where the record engine keeps things in the store: every key it reads or writes is built
//! here, and nowhere else.
//!
//! A key is one letter naming its kind, then fixed-width binary parts (record 32 bytes,
//! section 16, author 32, sequence numbers and epochs big-endian), so that a prefix scan of a
//! kind and record (and section, and author) reads exactly those keys, in log order.
//!
//! | key | value |
//! |---|---|
//! | `R` record | registration (CBOR) |
//! | `K` record section epoch recipient | a section key wrapped to one X25519 key, signed by the record root |
//! | `E` record section epoch | a section key released from emergency escrow to this node (see [`crate::keywrap::EscrowedKey`]) |
//! | `B` record section author seq | an encoded bundle |
//! | `L` record section author | the author's log head in that section |
//! | `C` record section | a sealed snapshot of the section document (a cache; rebuildable) |
//! | `F` record section author seq | a second, conflicting bundle: fork evidence |
//! | `H` record author section seq | a write held for the patient's review: its facts (CBOR; see `held.rs`) |
//! | `J` record author section seq | the held write's sealed bundle, as received |
//! | `S` record section | the section's shared snapshot, signed by a patient device |
//! | `T` record section author | the section's base: where a shared snapshot this node started from left that author's log |
//! | `A` record section author seq | when this node accepted that bundle (its own clock, milliseconds, big-endian) |
//! | `N/` name | a node-level value, not part of any record (held grants, credentials, known peers), by its text name |
//! | `M/format` | the store's format version (written by [`crate::store::check_format`], not here) |
//!
//! No kind's letter begins another kind's key (tested below): a scan of one kind never reads
//! another's.

use crate::ids::{PeerKey, RecordId, SectionId};

/// A key of kind `tag`: the letter, then `parts` as they are.
fn key(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + parts.iter().map(|p| p.len()).sum::<usize>());
    k.push(tag);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

/// The prefixes of every key kind that holds part of `r` (all but the node-level `N/` and
/// `M/`): deleting them all forgets the record.
pub(super) fn k_all_of_record(r: &RecordId) -> Vec<Vec<u8>> {
    b"RKBLCFHJSTAE".iter().map(|t| key(*t, &[&r.0])).collect()
}

/// Every record's registration (scan prefix).
pub(super) fn k_records_prefix() -> Vec<u8> {
    key(b'R', &[])
}

pub(super) fn k_record(r: &RecordId) -> Vec<u8> {
    key(b'R', &[&r.0])
}

pub(super) fn k_wrap_prefix(r: &RecordId) -> Vec<u8> {
    key(b'K', &[&r.0])
}

pub(super) fn k_wrap(r: &RecordId, s: &SectionId, epoch: u32, recipient: &[u8; 32]) -> Vec<u8> {
    key(b'K', &[&r.0, &s.0, &epoch.to_be_bytes(), recipient])
}

pub(super) fn k_escrow_prefix(r: &RecordId) -> Vec<u8> {
    key(b'E', &[&r.0])
}

pub(super) fn k_escrow(r: &RecordId, s: &SectionId, epoch: u32) -> Vec<u8> {
    key(b'E', &[&r.0, &s.0, &epoch.to_be_bytes()])
}

pub(super) fn k_bundle(r: &RecordId, s: &SectionId, a: &PeerKey, seq: u64) -> Vec<u8> {
    key(b'B', &[&r.0, &s.0, &a.0, &seq.to_be_bytes()])
}

/// Fork evidence: a second bundle an author signed for a position its log already holds.
pub(super) fn k_fork(r: &RecordId, s: &SectionId, a: &PeerKey, seq: u64) -> Vec<u8> {
    key(b'F', &[&r.0, &s.0, &a.0, &seq.to_be_bytes()])
}

/// The log heads of every section of a record (scan prefix).
pub(super) fn k_heads_of_record(r: &RecordId) -> Vec<u8> {
    key(b'L', &[&r.0])
}

pub(super) fn k_head_prefix(r: &RecordId, s: &SectionId) -> Vec<u8> {
    key(b'L', &[&r.0, &s.0])
}

pub(super) fn k_head(r: &RecordId, s: &SectionId, a: &PeerKey) -> Vec<u8> {
    key(b'L', &[&r.0, &s.0, &a.0])
}

pub(super) fn k_shared(r: &RecordId, s: &SectionId) -> Vec<u8> {
    key(b'S', &[&r.0, &s.0])
}

pub(super) fn k_base_prefix(r: &RecordId, s: &SectionId) -> Vec<u8> {
    key(b'T', &[&r.0, &s.0])
}

pub(super) fn k_base(r: &RecordId, s: &SectionId, a: &PeerKey) -> Vec<u8> {
    key(b'T', &[&r.0, &s.0, &a.0])
}

pub(super) fn k_received(r: &RecordId, s: &SectionId, a: &PeerKey, seq: u64) -> Vec<u8> {
    key(b'A', &[&r.0, &s.0, &a.0, &seq.to_be_bytes()])
}

pub(super) fn k_cache(r: &RecordId, s: &SectionId) -> Vec<u8> {
    key(b'C', &[&r.0, &s.0])
}

/// Every held write on this node (scan prefix).
pub(super) fn k_held_prefix() -> Vec<u8> {
    key(b'H', &[])
}

pub(super) fn k_held(r: &RecordId, a: &PeerKey, s: &SectionId, seq: u64) -> Vec<u8> {
    key(b'H', &[&r.0, &a.0, &s.0, &seq.to_be_bytes()])
}

pub(super) fn k_held_bytes(r: &RecordId, a: &PeerKey, s: &SectionId, seq: u64) -> Vec<u8> {
    key(b'J', &[&r.0, &a.0, &s.0, &seq.to_be_bytes()])
}

/// A node-level value's key (or, for a prefix of names, the scan prefix).
pub(super) fn local_key(name: &str) -> Vec<u8> {
    key(b'N', &[b"/".as_slice(), name.as_bytes()])
}

/// The record a registration key (`R` record) names.
pub(super) fn record_in(k: &[u8]) -> Option<RecordId> {
    <[u8; 32]>::try_from(k.get(1..)?).ok().map(RecordId)
}

/// The author a log head or base key (`L`/`T` record section author) ends with.
pub(super) fn author_in(k: &[u8]) -> Option<PeerKey> {
    <[u8; 32]>::try_from(k.get(k.len().checked_sub(32)?..)?)
        .ok()
        .map(PeerKey)
}

/// The section and author of a log head key (`L` record section author).
pub(super) fn head_key_parts(k: &[u8]) -> Option<(SectionId, PeerKey)> {
    if k.len() != 1 + 32 + 16 + 32 {
        return None;
    }
    let s = <[u8; 16]>::try_from(&k[33..49]).ok()?;
    let a = <[u8; 32]>::try_from(&k[49..]).ok()?;
    Some((SectionId(s), PeerKey(a)))
}

/// A node-level value's name, from its key.
pub(super) fn local_name(k: &[u8]) -> Option<String> {
    String::from_utf8(k.get(2..)?.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: receipt times once shared the base's letter, so reading a section's base
    /// scanned one key per bundle (incremental sync grew with history) and a receipt key
    /// began with its author's base key.
    #[test]
    fn no_key_kind_is_a_prefix_of_another() {
        let (r, s, a) = (RecordId([1; 32]), SectionId([2; 16]), PeerKey([3; 32]));
        let kinds = [
            k_record(&r),
            k_wrap(&r, &s, 1, &[4; 32]),
            k_escrow(&r, &s, 1),
            k_bundle(&r, &s, &a, 5),
            k_fork(&r, &s, &a, 5),
            k_head(&r, &s, &a),
            k_shared(&r, &s),
            k_base(&r, &s, &a),
            k_received(&r, &s, &a, 5),
            k_cache(&r, &s),
            k_held(&r, &a, &s, 5),
            k_held_bytes(&r, &a, &s, 5),
            local_key("grant/x"),
            crate::store::FORMAT_KEY.to_vec(),
        ];
        for (i, x) in kinds.iter().enumerate() {
            for (j, y) in kinds.iter().enumerate() {
                assert!(
                    i == j || !y.starts_with(&x[..1]),
                    "kinds {i} and {j} share a letter"
                );
            }
        }
        assert!(!k_received(&r, &s, &a, 5).starts_with(&k_base_prefix(&r, &s)));
        // The scan prefixes are the prefixes of their kinds.
        assert!(k_record(&r).starts_with(&k_records_prefix()));
        assert!(k_wrap(&r, &s, 1, &[4; 32]).starts_with(&k_wrap_prefix(&r)));
        assert!(k_escrow(&r, &s, 1).starts_with(&k_escrow_prefix(&r)));
        assert!(k_head(&r, &s, &a).starts_with(&k_head_prefix(&r, &s)));
        assert!(k_head_prefix(&r, &s).starts_with(&k_heads_of_record(&r)));
        assert!(k_base(&r, &s, &a).starts_with(&k_base_prefix(&r, &s)));
        assert!(k_held(&r, &a, &s, 5).starts_with(&k_held_prefix()));
        assert_eq!(local_key("peer/x"), b"N/peer/x");
        // What the keys are read back as.
        assert_eq!(record_in(&k_record(&r)), Some(r));
        assert_eq!(author_in(&k_head(&r, &s, &a)), Some(a));
        assert_eq!(author_in(&k_base(&r, &s, &a)), Some(a));
        assert_eq!(head_key_parts(&k_head(&r, &s, &a)), Some((s, a)));
        assert_eq!(head_key_parts(&k_head_prefix(&r, &s)), None);
        assert_eq!(local_name(&local_key("peer/x")).as_deref(), Some("peer/x"));
    }
}
