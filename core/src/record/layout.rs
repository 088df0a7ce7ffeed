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
//! | `G` record | the record's keyring stamp: 16 bytes written afresh in every batch that writes a `K` or `E` key of the record (see `keyring.rs`), so that an open can tell the keys it unwrapped before are still all there are |
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
//! | `Q` original key | an item `hearth store repair` took out of use because it was damaged: the original key after the letter, the bytes as found (kept for inspection, read by nothing else) |
//! | `M/format` | the store's format version (written by [`crate::store::check_format`], not here) |
//!
//! No kind's letter begins another kind's key (tested below): a scan of one kind never reads
//! another's. `C` and `S` are the [`BULKY_KINDS`], which a store may keep apart.

use crate::ids::{PeerKey, RecordId, SectionId};

/// The letter of each key kind (the table above).
mod tag {
    pub(super) const RECORD: u8 = b'R';
    pub(super) const WRAP: u8 = b'K';
    pub(super) const ESCROW: u8 = b'E';
    pub(super) const KEYRING: u8 = b'G';
    pub(super) const BUNDLE: u8 = b'B';
    pub(super) const HEAD: u8 = b'L';
    pub(super) const CACHE: u8 = b'C';
    pub(super) const FORK: u8 = b'F';
    pub(super) const HELD: u8 = b'H';
    pub(super) const HELD_BYTES: u8 = b'J';
    pub(super) const SHARED: u8 = b'S';
    pub(super) const BASE: u8 = b'T';
    pub(super) const RECEIVED: u8 = b'A';
    pub(super) const LOCAL: u8 = b'N';
    pub(super) const QUARANTINE: u8 = b'Q';
}

/// The kinds whose values grow with a section's history: its local and shared snapshots,
/// megabytes at 50,000 entries. A store whose pages hold neighbouring keys together (sled)
/// keeps these apart from the small keys written on every change, or each commit next to them
/// rewrites a page carrying megabytes, and every read of a neighbour copies it (issue #16).
pub const BULKY_KINDS: [u8; 2] = [tag::CACHE, tag::SHARED];

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
    [
        tag::RECORD,
        tag::WRAP,
        tag::BUNDLE,
        tag::HEAD,
        tag::CACHE,
        tag::FORK,
        tag::HELD,
        tag::HELD_BYTES,
        tag::SHARED,
        tag::BASE,
        tag::ESCROW,
        tag::KEYRING,
        tag::RECEIVED,
    ]
    .iter()
    .map(|t| key(*t, &[&r.0]))
    .collect()
}

/// Every record's registration (scan prefix).
pub(super) fn k_records_prefix() -> Vec<u8> {
    key(tag::RECORD, &[])
}

pub(super) fn k_record(r: &RecordId) -> Vec<u8> {
    key(tag::RECORD, &[&r.0])
}

pub(super) fn k_wrap_prefix(r: &RecordId) -> Vec<u8> {
    key(tag::WRAP, &[&r.0])
}

pub(super) fn k_wrap(r: &RecordId, s: &SectionId, epoch: u32, recipient: &[u8; 32]) -> Vec<u8> {
    key(tag::WRAP, &[&r.0, &s.0, &epoch.to_be_bytes(), recipient])
}

pub(super) fn k_escrow_prefix(r: &RecordId) -> Vec<u8> {
    key(tag::ESCROW, &[&r.0])
}

pub(super) fn k_escrow(r: &RecordId, s: &SectionId, epoch: u32) -> Vec<u8> {
    key(tag::ESCROW, &[&r.0, &s.0, &epoch.to_be_bytes()])
}

/// The record's keyring stamp (see the table above).
pub(super) fn k_keyring(r: &RecordId) -> Vec<u8> {
    key(tag::KEYRING, &[&r.0])
}

pub(super) fn k_bundle(r: &RecordId, s: &SectionId, a: &PeerKey, seq: u64) -> Vec<u8> {
    key(tag::BUNDLE, &[&r.0, &s.0, &a.0, &seq.to_be_bytes()])
}

/// Fork evidence: a second bundle an author signed for a position its log already holds.
pub(super) fn k_fork(r: &RecordId, s: &SectionId, a: &PeerKey, seq: u64) -> Vec<u8> {
    key(tag::FORK, &[&r.0, &s.0, &a.0, &seq.to_be_bytes()])
}

/// The log heads of every section of a record (scan prefix).
pub(super) fn k_heads_of_record(r: &RecordId) -> Vec<u8> {
    key(tag::HEAD, &[&r.0])
}

pub(super) fn k_head_prefix(r: &RecordId, s: &SectionId) -> Vec<u8> {
    key(tag::HEAD, &[&r.0, &s.0])
}

pub(super) fn k_head(r: &RecordId, s: &SectionId, a: &PeerKey) -> Vec<u8> {
    key(tag::HEAD, &[&r.0, &s.0, &a.0])
}

pub(super) fn k_shared(r: &RecordId, s: &SectionId) -> Vec<u8> {
    key(tag::SHARED, &[&r.0, &s.0])
}

pub(super) fn k_base_prefix(r: &RecordId, s: &SectionId) -> Vec<u8> {
    key(tag::BASE, &[&r.0, &s.0])
}

pub(super) fn k_base(r: &RecordId, s: &SectionId, a: &PeerKey) -> Vec<u8> {
    key(tag::BASE, &[&r.0, &s.0, &a.0])
}

pub(super) fn k_received(r: &RecordId, s: &SectionId, a: &PeerKey, seq: u64) -> Vec<u8> {
    key(tag::RECEIVED, &[&r.0, &s.0, &a.0, &seq.to_be_bytes()])
}

pub(super) fn k_cache(r: &RecordId, s: &SectionId) -> Vec<u8> {
    key(tag::CACHE, &[&r.0, &s.0])
}

/// Every held write on this node (scan prefix).
pub(super) fn k_held_prefix() -> Vec<u8> {
    key(tag::HELD, &[])
}

pub(super) fn k_held(r: &RecordId, a: &PeerKey, s: &SectionId, seq: u64) -> Vec<u8> {
    key(tag::HELD, &[&r.0, &a.0, &s.0, &seq.to_be_bytes()])
}

pub(super) fn k_held_bytes(r: &RecordId, a: &PeerKey, s: &SectionId, seq: u64) -> Vec<u8> {
    key(tag::HELD_BYTES, &[&r.0, &a.0, &s.0, &seq.to_be_bytes()])
}

/// A node-level value's key (or, for a prefix of names, the scan prefix).
pub(super) fn local_key(name: &str) -> Vec<u8> {
    key(tag::LOCAL, &[b"/".as_slice(), name.as_bytes()])
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

/// The key a damaged item is kept under once `hearth store repair` took it out of use: out of
/// every kind's scan, its bytes kept for inspection.
pub(super) fn k_quarantine(original: &[u8]) -> Vec<u8> {
    key(tag::QUARANTINE, &[original])
}

/// One author's log in one section of one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct LogId {
    pub(super) record: RecordId,
    pub(super) section: SectionId,
    pub(super) author: PeerKey,
}

/// What a stored key names, read back by [`parse`]: every kind in the table above.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Stored {
    Record(RecordId),
    Wrap(RecordId, SectionId, u32, [u8; 32]),
    Escrow(RecordId, SectionId, u32),
    Keyring(RecordId),
    Bundle(LogId, u64),
    Head(LogId),
    Cache(RecordId, SectionId),
    Fork(LogId, u64),
    Held(LogId, u64),
    HeldBytes(LogId, u64),
    Shared(RecordId, SectionId),
    Base(LogId),
    Received(LogId, u64),
    /// A node-level value, by its name (`None`: the name is not UTF-8).
    Local(Option<String>),
    Format,
    Quarantined,
    /// A key of no kind this code writes (or of a known kind with the wrong length).
    Unknown,
}

/// Reads fixed-width parts off the front of a key.
struct Parts<'a>(&'a [u8]);

impl Parts<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_at_checked(N)?;
        self.0 = rest;
        head.try_into().ok()
    }
    fn record(&mut self) -> Option<RecordId> {
        self.take().map(RecordId)
    }
    fn section(&mut self) -> Option<SectionId> {
        self.take().map(SectionId)
    }
    fn peer(&mut self) -> Option<PeerKey> {
        self.take().map(PeerKey)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_be_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_be_bytes)
    }
    fn log(&mut self) -> Option<LogId> {
        Some(LogId {
            record: self.record()?,
            section: self.section()?,
            author: self.peer()?,
        })
    }
    /// The held-write order: record, author, section.
    fn held_log(&mut self) -> Option<LogId> {
        let record = self.record()?;
        let author = self.peer()?;
        Some(LogId {
            record,
            section: self.section()?,
            author,
        })
    }
    /// `v`, if every byte was read.
    fn end<T>(&self, v: Option<T>) -> Option<T> {
        if self.0.is_empty() { v } else { None }
    }
}

/// What `k` names.
pub(super) fn parse(k: &[u8]) -> Stored {
    if k == crate::store::FORMAT_KEY {
        return Stored::Format;
    }
    let Some((&t, rest)) = k.split_first() else {
        return Stored::Unknown;
    };
    let mut p = Parts(rest);
    let parsed = match t {
        tag::RECORD | tag::KEYRING => {
            let r = p.record();
            p.end(r).map(|r| {
                if t == tag::RECORD {
                    Stored::Record(r)
                } else {
                    Stored::Keyring(r)
                }
            })
        }
        tag::WRAP => {
            let v = (|| Some((p.record()?, p.section()?, p.u32()?, p.take::<32>()?)))();
            p.end(v).map(|(r, s, e, to)| Stored::Wrap(r, s, e, to))
        }
        tag::ESCROW => {
            let v = (|| Some((p.record()?, p.section()?, p.u32()?)))();
            p.end(v).map(|(r, s, e)| Stored::Escrow(r, s, e))
        }
        tag::BUNDLE | tag::FORK | tag::RECEIVED => {
            let v = (|| Some((p.log()?, p.u64()?)))();
            p.end(v).map(|(l, seq)| match t {
                tag::BUNDLE => Stored::Bundle(l, seq),
                tag::FORK => Stored::Fork(l, seq),
                _ => Stored::Received(l, seq),
            })
        }
        tag::HEAD | tag::BASE => {
            let v = p.log();
            p.end(v).map(|l| {
                if t == tag::HEAD {
                    Stored::Head(l)
                } else {
                    Stored::Base(l)
                }
            })
        }
        tag::CACHE | tag::SHARED => {
            let v = (|| Some((p.record()?, p.section()?)))();
            p.end(v).map(|(r, s)| {
                if t == tag::CACHE {
                    Stored::Cache(r, s)
                } else {
                    Stored::Shared(r, s)
                }
            })
        }
        tag::HELD | tag::HELD_BYTES => {
            let v = (|| Some((p.held_log()?, p.u64()?)))();
            p.end(v).map(|(l, seq)| {
                if t == tag::HELD {
                    Stored::Held(l, seq)
                } else {
                    Stored::HeldBytes(l, seq)
                }
            })
        }
        tag::LOCAL => Some(Stored::Local(local_name(k))),
        tag::QUARANTINE => Some(Stored::Quarantined),
        _ => None,
    };
    parsed.unwrap_or(Stored::Unknown)
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
            k_keyring(&r),
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
            k_quarantine(&k_record(&r)),
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
        assert!(!k_quarantine(&k_bundle(&r, &s, &a, 5)).starts_with(&k_bundle(&r, &s, &a, 5)[..1]));
    }

    #[test]
    fn every_key_kind_parses_back() {
        let (r, s, a) = (RecordId([1; 32]), SectionId([2; 16]), PeerKey([3; 32]));
        let l = LogId {
            record: r,
            section: s,
            author: a,
        };
        assert_eq!(parse(&k_record(&r)), Stored::Record(r));
        assert_eq!(
            parse(&k_wrap(&r, &s, 7, &[4; 32])),
            Stored::Wrap(r, s, 7, [4; 32])
        );
        assert_eq!(parse(&k_escrow(&r, &s, 7)), Stored::Escrow(r, s, 7));
        assert_eq!(parse(&k_keyring(&r)), Stored::Keyring(r));
        assert_eq!(parse(&k_bundle(&r, &s, &a, 9)), Stored::Bundle(l, 9));
        assert_eq!(parse(&k_fork(&r, &s, &a, 9)), Stored::Fork(l, 9));
        assert_eq!(parse(&k_received(&r, &s, &a, 9)), Stored::Received(l, 9));
        assert_eq!(parse(&k_head(&r, &s, &a)), Stored::Head(l));
        assert_eq!(parse(&k_base(&r, &s, &a)), Stored::Base(l));
        assert_eq!(parse(&k_cache(&r, &s)), Stored::Cache(r, s));
        assert_eq!(parse(&k_shared(&r, &s)), Stored::Shared(r, s));
        assert_eq!(parse(&k_held(&r, &a, &s, 9)), Stored::Held(l, 9));
        assert_eq!(parse(&k_held_bytes(&r, &a, &s, 9)), Stored::HeldBytes(l, 9));
        assert_eq!(
            parse(&local_key("peer/x")),
            Stored::Local(Some("peer/x".into()))
        );
        assert_eq!(parse(crate::store::FORMAT_KEY), Stored::Format);
        assert_eq!(parse(&k_quarantine(&k_record(&r))), Stored::Quarantined);
        // Truncated and unknown keys are named as such, never misread.
        let mut short = k_bundle(&r, &s, &a, 9);
        short.pop();
        assert_eq!(parse(&short), Stored::Unknown);
        assert_eq!(parse(b"Zzz"), Stored::Unknown);
        assert_eq!(parse(b""), Stored::Unknown);
    }
}
