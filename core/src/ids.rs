//! Identifiers and their text forms.
//!
//! | id | bytes | text form |
//! |---|---|---|
//! | [`PeerKey`] | ed25519 public key of a device or organisation | libp2p peer id (`12D3KooW…`, base58) |
//! | [`RecordId`] | the patient's record root public key | `r` + base32 (lower case, 52 chars) |
//! | [`SectionId`] | 16 random bytes, opaque on the wire | 32 hex digits |
//! | [`EntryId`] | 16 bytes: the writer's clock, then 78 random bits ([`EntryId::generate_at`]) | `e` + base32 (lower case, 26 chars; sorts by time) |
//! | [`DisputeId`] | 16 random bytes | `d` + base32 (lower case, 26 chars) |
//!
//! In human-readable serde formats (JSON) ids serialise as their text form; in binary formats
//! (CBOR) as raw bytes.

use data_encoding::BASE32_NOPAD;
use rand_core::CryptoRng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A text form that did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind}: {reason}")]
pub struct IdParseError {
    /// Which kind of identifier was expected.
    pub kind: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
}

fn b32(bytes: &[u8]) -> String {
    BASE32_NOPAD.encode(bytes).to_ascii_lowercase()
}

fn unb32<const N: usize>(s: &str, kind: &'static str) -> Result<[u8; N], IdParseError> {
    let upper = s.to_ascii_uppercase();
    let v = BASE32_NOPAD
        .decode(upper.as_bytes())
        .map_err(|_| IdParseError {
            kind,
            reason: "not base32",
        })?;
    v.try_into().map_err(|_| IdParseError {
        kind,
        reason: "wrong length",
    })
}

/// Reads an id's raw bytes from a binary format without an intermediate buffer (ids are read
/// many times in every sync message): exactly `N` bytes, or the error it names.
struct FixedBytes<const N: usize>(&'static str);

impl<const N: usize> serde::de::Visitor<'_> for FixedBytes<N> {
    type Value = [u8; N];

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{N} bytes")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        v.try_into().map_err(|_| E::custom(self.0))
    }
}

macro_rules! byte_id {
    ($(#[$doc:meta])* $name:ident, $n:expr, $kind:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; $n]);

        impl $name {
            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $n] {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.collect_str(self)
                } else {
                    s.serialize_bytes(&self.0)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let s = String::deserialize(d)?;
                    s.parse().map_err(serde::de::Error::custom)
                } else {
                    d.deserialize_bytes(FixedBytes::<$n>(concat!($kind, ": wrong length")))
                        .map($name)
                }
            }
        }
    };
}

byte_id!(
    /// An ed25519 public key naming a device or an organisation; its text form is the libp2p
    /// peer id of the same key, so the transport identity and the capability audience coincide.
    PeerKey,
    32,
    "peer id"
);
byte_id!(
    /// A record: the patient's record root public key (self-certifying).
    RecordId,
    32,
    "record id"
);
byte_id!(
    /// A section's opaque id; its readable name lives encrypted in the record's directory.
    SectionId,
    16,
    "section id"
);
byte_id!(
    /// One version of one entry.
    EntryId,
    16,
    "entry id"
);

byte_id!(
    /// A patient's dispute of an entry (see [`crate::entry::dispute`]).
    DisputeId,
    16,
    "dispute id"
);

byte_id!(
    /// The SHA-256 hash of an encoded bundle; links each bundle to its predecessor in a log.
    BundleHash,
    32,
    "bundle hash"
);

impl fmt::Display for BundleHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&data_encoding::HEXLOWER.encode(&self.0))
    }
}

impl FromStr for BundleHash {
    type Err = IdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let v = data_encoding::HEXLOWER_PERMISSIVE
            .decode(s.as_bytes())
            .map_err(|_| IdParseError {
                kind: "bundle hash",
                reason: "not hex",
            })?;
        v.try_into().map(BundleHash).map_err(|_| IdParseError {
            kind: "bundle hash",
            reason: "wrong length",
        })
    }
}

/// The libp2p encoding of an ed25519 public key as a peer id: an identity multihash
/// (`0x00`, length `0x24`) of the protobuf `PublicKey { key_type: Ed25519, data }`.
const PEER_ID_PREFIX: [u8; 6] = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];

impl fmt::Display for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(self.peer_id_bytes()).into_string())
    }
}

impl FromStr for PeerKey {
    type Err = IdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| IdParseError {
            kind: "peer id",
            reason,
        };
        if s.len() > 64 {
            return Err(err("too long"));
        }
        let bytes = bs58::decode(s).into_vec().map_err(|_| err("not base58"))?;
        PeerKey::from_peer_id_bytes(&bytes).ok_or(err("not an ed25519 peer id"))
    }
}

impl PeerKey {
    /// The key's libp2p peer id, as bytes (what its text form encodes in base58).
    pub fn peer_id_bytes(&self) -> [u8; 38] {
        let mut bytes = [0u8; 38];
        bytes[..6].copy_from_slice(&PEER_ID_PREFIX);
        bytes[6..].copy_from_slice(&self.0);
        bytes
    }

    /// The key whose libp2p peer id is `bytes`, if they are an ed25519 key's (the point is not
    /// checked here: see [`PeerKey::verifying_key`]).
    pub fn from_peer_id_bytes(bytes: &[u8]) -> Option<PeerKey> {
        let key = bytes.strip_prefix(&PEER_ID_PREFIX)?;
        key.try_into().ok().map(PeerKey)
    }

    /// The key as an ed25519 verifying key, refusing invalid points.
    pub fn verifying_key(&self) -> Result<ed25519_dalek::VerifyingKey, crate::crypto::CryptoError> {
        crate::crypto::verifying_key(&self.0)
    }

    /// The X25519 form of this device key: where a patient wraps section keys for a grant made
    /// to a bare peer id, whose certified agreement key it cannot know yet
    /// ([`crate::crypto::device_agreement_public`]).
    pub fn device_agreement(&self) -> Result<[u8; 32], crate::crypto::CryptoError> {
        crate::crypto::device_agreement_public(&self.verifying_key()?)
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", b32(&self.0))
    }
}

impl FromStr for RecordId {
    type Err = IdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s.strip_prefix('r').ok_or(IdParseError {
            kind: "record id",
            reason: "must start with 'r'",
        })?;
        unb32::<32>(rest, "record id").map(RecordId)
    }
}

impl RecordId {
    /// The record root key as an ed25519 verifying key.
    pub fn verifying_key(&self) -> Result<ed25519_dalek::VerifyingKey, crate::crypto::CryptoError> {
        crate::crypto::verifying_key(&self.0)
    }
}

impl fmt::Display for SectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&data_encoding::HEXLOWER.encode(&self.0))
    }
}

impl FromStr for SectionId {
    type Err = IdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let v = data_encoding::HEXLOWER_PERMISSIVE
            .decode(s.as_bytes())
            .map_err(|_| IdParseError {
                kind: "section id",
                reason: "not hex",
            })?;
        v.try_into().map(SectionId).map_err(|_| IdParseError {
            kind: "section id",
            reason: "wrong length",
        })
    }
}

impl SectionId {
    /// The id of the record's auth document (section directory, devices, consent ledger).
    pub const AUTH: SectionId = SectionId([0u8; 16]);

    /// The id of the patient's private consent ledger (requests, decisions, trusted
    /// organisations): readable by the patient's own devices only.
    pub const LEDGER: SectionId = SectionId([0xffu8; 16]);

    /// The id of the record's audit log (access receipts and what professionals report they
    /// read and wrote): readable by the patient's own devices only.
    pub const AUDIT: SectionId = SectionId([0xfeu8; 16]);

    /// The sections only the patient's own devices (and the recovery key) can read.
    pub const PATIENT_ONLY: [SectionId; 2] = [Self::LEDGER, Self::AUDIT];

    /// A fresh random section id (never a reserved one).
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        loop {
            let mut b = [0u8; 16];
            rng.fill_bytes(&mut b);
            if !SectionId(b).is_reserved() {
                return SectionId(b);
            }
        }
    }

    /// Whether this is the auth document, the ledger or the audit log.
    pub fn is_reserved(&self) -> bool {
        *self == Self::AUTH || Self::PATIENT_ONLY.contains(self)
    }
}

/// The text form of a random 16-byte id: one letter, then base32 (lower case, 26 chars); and a
/// fresh random one.
macro_rules! lettered_id {
    ($name:ident, $letter:literal, $kind:literal) => {
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $letter, b32(&self.0))
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let rest = s.strip_prefix($letter).ok_or(IdParseError {
                    kind: $kind,
                    reason: concat!("must start with '", $letter, "'"),
                })?;
                unb32::<16>(rest, $kind).map($name)
            }
        }

        impl $name {
            #[doc = concat!("A fresh random ", $kind, ".")]
            pub fn generate(rng: &mut impl CryptoRng) -> Self {
                let mut b = [0u8; 16];
                rng.fill_bytes(&mut b);
                $name(b)
            }
        }
    };
}

lettered_id!(EntryId, 'e', "entry id");

/// Characters of an entry id's text form that spell its time.
const TIME_CHARS: usize = 10;

impl EntryId {
    /// A fresh entry id whose text form sorts after those of entries made earlier (to the
    /// millisecond; within one millisecond, at random): its first ten base32 characters spell
    /// `now` in the letters `a`–`z` only (which base32 orders as ASCII does; a base-26
    /// count of milliseconds lasts 4,000 years), the other 78 bits are random. A section's
    /// document then grows at its end as entries are added, which automerge applies many
    /// times faster than keys scattered among the old ones: replaying 93 bundles onto a
    /// loaded 10,000-entry document took ≈ 5 ms instead of 75–175 ms in a scratch program.
    /// The time is the writer's own clock and only orders keys: nothing checks it.
    pub fn generate_at(now: crate::time::Timestamp, rng: &mut impl CryptoRng) -> Self {
        let mut chars = [0u8; 26];
        let mut t = u64::try_from(now.as_millis()).unwrap_or(0);
        for c in chars[..TIME_CHARS].iter_mut().rev() {
            *c = (t % 26) as u8;
            t /= 26;
        }
        let mut random = [0u8; 16];
        rng.fill_bytes(&mut random);
        for (c, r) in chars[TIME_CHARS..].iter_mut().zip(random) {
            *c = r & 31;
        }
        // Sixteen bytes are 25 characters of five bits and one of three (the top three).
        let mut bits: u128 = 0;
        for c in &chars[..25] {
            bits = (bits << 5) | u128::from(*c);
        }
        bits = (bits << 3) | u128::from(chars[25] & 7);
        EntryId(bits.to_be_bytes())
    }
}
lettered_id!(DisputeId, 'd', "dispute id");

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn text_forms_round_trip(a in any::<[u8; 32]>(), b in any::<[u8; 16]>()) {
            let p = PeerKey(a);
            prop_assert_eq!(p.to_string().parse::<PeerKey>().unwrap(), p);
            let r = RecordId(a);
            prop_assert_eq!(r.to_string().parse::<RecordId>().unwrap(), r);
            let s = SectionId(b);
            prop_assert_eq!(s.to_string().parse::<SectionId>().unwrap(), s);
            let e = EntryId(b);
            prop_assert_eq!(e.to_string().parse::<EntryId>().unwrap(), e);
            let d = DisputeId(b);
            prop_assert_eq!(d.to_string().parse::<DisputeId>().unwrap(), d);
        }

        #[test]
        fn parsers_never_panic(s in ".{0,80}") {
            let _ = s.parse::<PeerKey>();
            let _ = s.parse::<RecordId>();
            let _ = s.parse::<SectionId>();
            let _ = s.parse::<EntryId>();
            let _ = s.parse::<DisputeId>();
        }
    }

    #[test]
    fn entry_ids_made_later_sort_later_as_text() {
        let mut rng = crate::test_utils::TestRng::new(7);
        let mut last = String::new();
        for ms in [
            0i64,
            1,
            25,
            26,
            27,
            675,
            676,
            1_700_000_000_000,
            1_790_000_000_000,
        ] {
            for _ in 0..3 {
                let a = EntryId::generate_at(crate::time::Timestamp::from_millis(ms), &mut rng);
                let text = a.to_string();
                assert_eq!(text.parse::<EntryId>().unwrap(), a);
                assert!(
                    text[1..11].bytes().all(|b| b.is_ascii_lowercase()),
                    "{text}"
                );
                assert!(
                    text[..11] >= last[..last.len().min(11)],
                    "{text} after {last}"
                );
                last = text;
            }
        }
        let t = crate::time::Timestamp::from_millis(1_790_000_000_000);
        let (a, b) = (
            EntryId::generate_at(t, &mut rng),
            EntryId::generate_at(t, &mut rng),
        );
        assert_ne!(a, b, "the rest is random");
    }

    #[test]
    fn peer_id_has_libp2p_shape() {
        let p = PeerKey([7u8; 32]);
        assert!(p.to_string().starts_with("12D3KooW"), "{p}");
    }

    #[test]
    fn json_uses_text_and_cbor_uses_bytes() {
        let e = EntryId([1u8; 16]);
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(json, format!("\"{e}\""));
        let cbor = serde_ipld_dagcbor::to_vec(&e).unwrap();
        assert_eq!(cbor.len(), 17);
        let back: EntryId = serde_ipld_dagcbor::from_slice(&cbor).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn cbor_ids_are_exactly_their_bytes() {
        let p = PeerKey([9u8; 32]);
        let back: PeerKey =
            serde_ipld_dagcbor::from_slice(&serde_ipld_dagcbor::to_vec(&p).unwrap()).unwrap();
        assert_eq!(back, p);
        // One byte short, one too many, and other CBOR kinds of the right length.
        let short = serde_ipld_dagcbor::to_vec(&serde_bytes::Bytes::new(&[9u8; 31])).unwrap();
        let long = serde_ipld_dagcbor::to_vec(&serde_bytes::Bytes::new(&[9u8; 33])).unwrap();
        let text = serde_ipld_dagcbor::to_vec(&"a".repeat(32)).unwrap();
        let array = serde_ipld_dagcbor::to_vec(&[9u8; 32]).unwrap();
        for bad in [short, long, text, array] {
            assert!(serde_ipld_dagcbor::from_slice::<PeerKey>(&bad).is_err());
            assert!(serde_ipld_dagcbor::from_slice::<RecordId>(&bad).is_err());
        }
        let err = serde_ipld_dagcbor::from_slice::<RecordId>(
            &serde_ipld_dagcbor::to_vec(&serde_bytes::Bytes::new(&[1u8; 5])).unwrap(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("record id: wrong length"), "{err}");
    }
}
