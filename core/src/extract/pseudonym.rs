//! Pseudonyms: the per-recipient, per-purpose key a record's contributions are signed with,
//! and its public half.

use super::ExtractPurpose;
use crate::crypto;
use crate::ids::PeerKey;
use data_encoding::BASE32_NOPAD;
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use zeroize::Zeroizing;

/// A record's pseudonym for one recipient and purpose: the public half of
/// [`contribution_key`]. Text form `p` + 52 lower-case base32 characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pseudonym(pub [u8; 32]);

impl fmt::Display for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", BASE32_NOPAD.encode(&self.0).to_ascii_lowercase())
    }
}

impl FromStr for Pseudonym {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s.strip_prefix('p').ok_or("a pseudonym starts with 'p'")?;
        let bytes = BASE32_NOPAD
            .decode(rest.to_ascii_uppercase().as_bytes())
            .map_err(|_| "a pseudonym is base32")?;
        <[u8; 32]>::try_from(bytes)
            .map(Pseudonym)
            .map_err(|_| "a pseudonym has 32 bytes")
    }
}

impl Serialize for Pseudonym {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            serde_bytes::Bytes::new(&self.0).serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Pseudonym {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            let b = serde_bytes::ByteBuf::deserialize(d)?;
            <[u8; 32]>::try_from(b.into_vec())
                .map(Pseudonym)
                .map_err(|_| serde::de::Error::custom("a pseudonym has 32 bytes"))
        }
    }
}

/// The signing key of a record's contributions to `recipient` for `purpose`: HKDF-SHA256 of
/// the record root key's secret (salt `hearth/extract/v1`, info naming the purpose and the
/// recipient). Deterministic, so the pseudonym is stable; one-way, so pseudonyms for different
/// recipients or purposes cannot be linked without the root key.
pub fn contribution_key(
    root: &SigningKey,
    recipient: &PeerKey,
    purpose: ExtractPurpose,
) -> SigningKey {
    let ikm = Zeroizing::new(root.to_bytes());
    let mut info = Vec::with_capacity(64);
    info.extend_from_slice(b"contribution-key/");
    info.extend_from_slice(purpose.as_str().as_bytes());
    info.push(0);
    info.extend_from_slice(&recipient.0);
    let seed = Zeroizing::new(crypto::hkdf32(ikm.as_ref(), b"hearth/extract/v1", &info));
    SigningKey::from_bytes(&seed)
}

/// The record's pseudonym for `recipient` and `purpose`.
pub fn pseudonym(root: &SigningKey, recipient: &PeerKey, purpose: ExtractPurpose) -> Pseudonym {
    Pseudonym(
        contribution_key(root, recipient, purpose)
            .verifying_key()
            .to_bytes(),
    )
}
