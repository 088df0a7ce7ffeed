//! Signed, encrypted bundles: the storage format and the wire format.
//!
//! A bundle carries a batch of automerge changes to one section by one author. The payload is
//! encrypted under the section's epoch key with XChaCha20-Poly1305, with the encoded header as
//! associated data; then the author's device key signs the header and the SHA-256 of the
//! ciphertext. Anyone can check the signature (a relay without keys included); only holders of
//! the epoch key can read it.
//!
//! The header also carries a **key commitment**: a domain-separated SHA-256 of the epoch key
//! and the nonce ([`crypto::key_commitment`]). Poly1305 alone is not committing: a ciphertext
//! can be crafted to open under two different keys, showing one reader one entry and another
//! reader a different one. Opening checks the commitment before decrypting, so a bundle opens
//! under exactly one key.
//!
//! ## Encoding
//!
//! ```text
//! "HBv1" | u32 header_len | header (deterministic DAG-CBOR) | u32 ct_len | ciphertext | signature (64)
//! ```
//!
//! Decoding checks lengths before it reads ("check, then parse"), refuses anything larger than
//! [`MAX_BUNDLE_LEN`], and refuses a header whose bytes are not the canonical encoding of the
//! decoded value, so every bundle has exactly one valid encoding and its hash is stable. The
//! signature covers the exact stored header bytes and the ciphertext's SHA-256 (one fast hash of
//! the payload, where signing it whole would cost ed25519 two SHA-512 passes, and checking it
//! one); nothing is re-encoded before verifying.

use crate::crypto::{self, Domain, NONCE_LEN, SymmetricKey};
use crate::ids::{BundleHash, PeerKey, RecordId, SectionId};
use crate::time::Timestamp;
use ed25519_dalek::SigningKey;
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteArray;

/// The largest encoded bundle accepted, in bytes.
pub const MAX_BUNDLE_LEN: usize = 8 * 1024 * 1024;
/// The largest encoded header accepted, in bytes.
pub const MAX_HEADER_LEN: usize = 1024;
const MAGIC: &[u8; 4] = b"HBv1";
/// The header's format version: 3 signs the header and the ciphertext's SHA-256, and commits
/// to the key.
pub const BUNDLE_VERSION: u8 = 3;

/// What the payload holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BundleKind {
    /// Automerge changes (`save_after` output), applied with `load_incremental`.
    Changes,
}

/// The signed, unencrypted part of a bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleHeader {
    /// Format version; currently 3 (version 1, before 2026-11-22, signed the whole ciphertext;
    /// version 2, before 2026-12-04, had no key commitment).
    pub v: u8,
    /// The record.
    pub record: RecordId,
    /// The section (opaque id).
    pub section: SectionId,
    /// The author's device key; the signature must verify under it.
    pub author: PeerKey,
    /// Position in the (section, author) log, from 1.
    pub seq: u64,
    /// Hash of the author's previous bundle in this section; `None` exactly when `seq == 1`.
    pub prev: Option<BundleHash>,
    /// The section key epoch the payload is encrypted under.
    pub epoch: u32,
    /// The XChaCha20 nonce.
    pub nonce: ByteArray<NONCE_LEN>,
    /// The key commitment: [`crypto::key_commitment`] of the epoch key and the nonce.
    pub commit: ByteArray<32>,
    /// When the author made it (author's clock; informational).
    pub time: Timestamp,
    /// What the payload holds.
    pub kind: BundleKind,
}

/// Why a bundle was refused. Each says whose fault it is likely to be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The bytes are not a bundle (damaged, truncated, or not Hearth data).
    #[error("malformed bundle: {0}")]
    Malformed(&'static str),
    /// The bundle is larger than this node accepts (a peer or file trying to exhaust memory).
    #[error("bundle too large ({0} bytes)")]
    TooLarge(usize),
    /// The signature does not verify under the author key: altered in storage or in transit,
    /// or forged.
    #[error("bundle signature does not verify (altered or forged)")]
    BadSignature,
    /// The payload does not decrypt under the epoch key: wrong key, or altered. Also when the
    /// key is not the one the header commits to.
    #[error("bundle payload does not decrypt (wrong key or altered)")]
    Decrypt,
    /// The header is well formed but its content is not allowed.
    #[error("invalid bundle header: {0}")]
    InvalidHeader(&'static str),
    /// The payload is not exactly one uncompressed automerge change chunk.
    #[error("bundle payload refused: {0}")]
    NotOneChange(&'static str),
}

/// A decoded bundle. Construct with [`Bundle::seal`] or [`Bundle::decode`].
///
/// Holds the encoded bytes once; the header bytes, ciphertext and signature are ranges of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    header: BundleHeader,
    encoded: Vec<u8>,
    /// Where the header bytes end (they start after the magic and their length).
    header_end: usize,
    hash: BundleHash,
}

/// Offset of the header bytes in the encoding.
const HEADER_START: usize = 4 + 4;

impl Bundle {
    /// Encrypts `plaintext` under `key` and signs the result with `author`. The header's
    /// `author` and `nonce` fields are set here.
    #[allow(clippy::too_many_arguments)]
    pub fn seal(
        record: RecordId,
        section: SectionId,
        seq: u64,
        prev: Option<BundleHash>,
        epoch: u32,
        time: Timestamp,
        key: &SymmetricKey,
        plaintext: &[u8],
        author: &SigningKey,
        rng: &mut impl CryptoRng,
    ) -> Result<Bundle, BundleError> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let header = BundleHeader {
            v: BUNDLE_VERSION,
            record,
            section,
            author: PeerKey(author.verifying_key().to_bytes()),
            seq,
            prev,
            epoch,
            nonce: ByteArray::new(nonce),
            commit: ByteArray::new(crypto::key_commitment(key, &nonce)),
            time,
            kind: BundleKind::Changes,
        };
        header.check()?;
        let header_bytes = serde_ipld_dagcbor::to_vec(&header)
            .map_err(|_| BundleError::Malformed("header encoding"))?;
        let ct_len = plaintext.len() + crypto::TAG_LEN;
        let total = HEADER_START + header_bytes.len() + 4 + ct_len + 64;
        if total > MAX_BUNDLE_LEN {
            return Err(BundleError::TooLarge(total));
        }
        let ct_len32 = u32::try_from(ct_len).map_err(|_| BundleError::TooLarge(total))?;
        let header_len32 =
            u32::try_from(header_bytes.len()).map_err(|_| BundleError::TooLarge(total))?;
        // The payload is encrypted where it is stored: no second copy of the ciphertext.
        let mut encoded = Vec::with_capacity(total);
        encoded.extend_from_slice(MAGIC);
        encoded.extend_from_slice(&header_len32.to_be_bytes());
        encoded.extend_from_slice(&header_bytes);
        encoded.extend_from_slice(&ct_len32.to_be_bytes());
        let ct_start = encoded.len();
        encoded.extend_from_slice(plaintext);
        let tag = crypto::seal_in_place(key, &nonce, &header_bytes, &mut encoded[ct_start..])
            .map_err(|_| BundleError::TooLarge(total))?;
        encoded.extend_from_slice(&tag);
        let signature = crypto::sign(
            author,
            Domain::Bundle,
            &[&header_bytes, &crypto::sha256(&[&encoded[ct_start..]])],
        );
        encoded.extend_from_slice(&signature);
        let hash = BundleHash(crypto::sha256(&[&encoded]));
        Ok(Bundle {
            header,
            header_end: HEADER_START + header_bytes.len(),
            encoded,
            hash,
        })
    }

    /// Parses encoded bytes. Checks structure and canonical encoding, not the signature: call
    /// [`Bundle::verify`] before trusting anything in it.
    pub fn decode(bytes: &[u8]) -> Result<Bundle, BundleError> {
        Bundle::decode_owned(bytes.to_vec())
    }

    /// [`Bundle::decode`] of bytes the caller gives up (no copy is made).
    pub fn decode_owned(bytes: Vec<u8>) -> Result<Bundle, BundleError> {
        if bytes.len() > MAX_BUNDLE_LEN {
            return Err(BundleError::TooLarge(bytes.len()));
        }
        let mut cur = bytes.as_slice();
        let magic = take(&mut cur, 4)?;
        if magic != MAGIC {
            return Err(BundleError::Malformed("not a Hearth bundle (bad magic)"));
        }
        let hlen = take_u32(&mut cur)? as usize;
        if hlen > MAX_HEADER_LEN {
            return Err(BundleError::Malformed("header too long"));
        }
        let header_bytes = take(&mut cur, hlen)?;
        let clen = take_u32(&mut cur)? as usize;
        let ciphertext = take(&mut cur, clen)?;
        take(&mut cur, 64)?;
        if !cur.is_empty() {
            return Err(BundleError::Malformed("trailing bytes"));
        }
        let header: BundleHeader = serde_ipld_dagcbor::from_slice(header_bytes)
            .map_err(|_| BundleError::Malformed("header is not valid CBOR for a bundle"))?;
        if !crate::canonical::is_encoding_of(&header, header_bytes) {
            return Err(BundleError::Malformed("header is not canonically encoded"));
        }
        header.check()?;
        if ciphertext.len() < crypto::TAG_LEN {
            return Err(BundleError::Malformed("ciphertext shorter than its tag"));
        }
        Ok(Bundle {
            header,
            header_end: HEADER_START + hlen,
            hash: BundleHash(crypto::sha256(&[&bytes])),
            encoded: bytes,
        })
    }

    /// The exact header bytes, as signed and used as associated data.
    fn header_bytes(&self) -> &[u8] {
        &self.encoded[HEADER_START..self.header_end]
    }

    /// The ciphertext with its tag.
    fn ciphertext(&self) -> &[u8] {
        &self.encoded[self.header_end + 4..self.encoded.len() - 64]
    }

    /// The author's signature.
    fn signature(&self) -> [u8; 64] {
        let mut sig = [0u8; 64];
        sig.copy_from_slice(&self.encoded[self.encoded.len() - 64..]);
        sig
    }

    /// Checks the author's signature over the exact header bytes and the ciphertext's hash.
    pub fn verify(&self) -> Result<(), BundleError> {
        let key = self
            .header
            .author
            .verifying_key()
            .map_err(|_| BundleError::InvalidHeader("author is not a valid ed25519 key"))?;
        crypto::verify(
            &key,
            Domain::Bundle,
            &[self.header_bytes(), &crypto::sha256(&[self.ciphertext()])],
            &self.signature(),
        )
        .map_err(|_| BundleError::BadSignature)
    }

    /// Whether `key` is the key the header commits to (constant time).
    fn committed_to(&self, key: &SymmetricKey) -> Result<(), BundleError> {
        let nonce = self.header.nonce.into_array();
        let expected = crypto::key_commitment(key, &nonce);
        if subtle::ConstantTimeEq::ct_eq(&expected[..], &self.header.commit[..]).into() {
            Ok(())
        } else {
            Err(BundleError::Decrypt)
        }
    }

    /// Decrypts the payload with the section key of the header's epoch.
    pub fn open(&self, key: &SymmetricKey) -> Result<Vec<u8>, BundleError> {
        self.committed_to(key)?;
        crypto::open_with_nonce(
            key,
            &self.header.nonce.into_array(),
            self.header_bytes(),
            self.ciphertext(),
        )
        .map_err(|_| BundleError::Decrypt)
    }

    /// The payload's length once decrypted.
    pub fn payload_len(&self) -> usize {
        self.ciphertext().len() - crypto::TAG_LEN
    }

    /// Decrypts the payload onto the end of `out`. On failure `out` is as it was. Reserve room
    /// first (see [`Bundle::payload_len`]): a vector that grows leaves copies of what it held in
    /// freed memory.
    pub fn open_into(&self, key: &SymmetricKey, out: &mut Vec<u8>) -> Result<(), BundleError> {
        let ct = &self.ciphertext()[..self.payload_len()];
        debug_assert!(
            out.capacity() - out.len() >= ct.len(),
            "reserve room for the payload first"
        );
        let start = out.len();
        out.extend_from_slice(ct);
        let opened = self.decrypt_in_place(key, &mut out[start..]);
        if opened.is_err() {
            out.truncate(start);
        }
        opened
    }

    /// Decrypts the payload into `out`, which must be exactly [`Bundle::payload_len`] long (so
    /// that the payloads of many bundles can be decrypted at once into parts of one buffer).
    /// On failure `out` is zeroed.
    pub fn open_to(&self, key: &SymmetricKey, out: &mut [u8]) -> Result<(), BundleError> {
        let ct = &self.ciphertext()[..self.payload_len()];
        if out.len() != ct.len() {
            return Err(BundleError::Decrypt);
        }
        out.copy_from_slice(ct);
        self.decrypt_in_place(key, out)
    }

    /// Decrypts `buf`, which holds the ciphertext without its tag; zeroes it on failure.
    fn decrypt_in_place(&self, key: &SymmetricKey, buf: &mut [u8]) -> Result<(), BundleError> {
        if let Err(e) = self.committed_to(key) {
            zeroize::Zeroize::zeroize(buf);
            return Err(e);
        }
        let tag = &self.ciphertext()[self.payload_len()..];
        let tag: &[u8; crypto::TAG_LEN] = tag.try_into().map_err(|_| BundleError::Decrypt)?;
        let nonce = self.header.nonce.into_array();
        let header = &self.encoded[HEADER_START..self.header_end];
        if crypto::open_in_place(key, &nonce, header, buf, tag).is_err() {
            zeroize::Zeroize::zeroize(buf);
            return Err(BundleError::Decrypt);
        }
        Ok(())
    }

    /// The header (unverified until [`Bundle::verify`] succeeded).
    pub fn header(&self) -> &BundleHeader {
        &self.header
    }

    /// The encoded bytes, as stored and sent.
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }

    /// SHA-256 of the encoded bytes.
    pub fn hash(&self) -> BundleHash {
        self.hash
    }
}

impl BundleHeader {
    fn check(&self) -> Result<(), BundleError> {
        if self.v == 1 {
            return Err(BundleError::InvalidHeader(
                "bundle format version 1 (written before 2026-11-22) is no longer read",
            ));
        }
        if self.v == 2 {
            return Err(BundleError::InvalidHeader(
                "bundle format version 2 (written before 2026-12-04, no key commitment) is no longer read",
            ));
        }
        if self.v != BUNDLE_VERSION {
            return Err(BundleError::InvalidHeader("unsupported bundle version"));
        }
        if self.seq == 0 {
            return Err(BundleError::InvalidHeader("sequence numbers start at 1"));
        }
        if (self.seq == 1) != self.prev.is_none() {
            return Err(BundleError::InvalidHeader(
                "the first bundle of a log has no predecessor, and only the first",
            ));
        }
        Ok(())
    }
}

/// The automerge binary format's magic bytes, which open every chunk.
const AUTOMERGE_MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
/// The automerge chunk type of an uncompressed change (0 is a document, 2 a compressed change,
/// 3 a bundle of changes).
const CHUNK_CHANGE: u8 = 1;
/// The longest actor id accepted in a change (Hearth's actors are 32-byte device keys).
const MAX_ACTOR_LEN: usize = 64;

/// What a bundle's payload says of its one automerge change, read from the change chunk's
/// header without decoding (let alone decompressing) anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeHead {
    /// The changes it depends on (automerge change hashes).
    pub deps: Vec<[u8; 32]>,
    /// The change's actor id.
    pub actor: Vec<u8>,
    /// The change's sequence number for that actor.
    pub seq: u64,
}

/// The automerge hash of a payload that [`read_change_head`] accepted (SHA-256 of the chunk
/// after its magic bytes and checksum).
pub fn change_hash(payload: &[u8]) -> [u8; 32] {
    crypto::sha256(&[payload.get(8..).unwrap_or_default()])
}

/// Checks that `payload` is exactly one **uncompressed** automerge change chunk, and reads its
/// header. Hearth writes each bundle's change as its raw chunk (`raw_bytes`): a compressed
/// chunk (type 2, which automerge inflates without bound), a document chunk or several chunks
/// are refused here, before automerge reads any of it, so the decoded change is never larger
/// than the payload that carried it.
pub fn read_change_head(payload: &[u8]) -> Result<ChangeHead, BundleError> {
    let bad = BundleError::NotOneChange;
    let mut cur = payload;
    let magic = take(&mut cur, 4).map_err(|_| bad("truncated change chunk"))?;
    if magic != AUTOMERGE_MAGIC {
        return Err(bad("not an automerge chunk"));
    }
    take(&mut cur, 4).map_err(|_| bad("truncated change chunk"))?;
    let kind = take(&mut cur, 1).map_err(|_| bad("truncated change chunk"))?[0];
    if kind != CHUNK_CHANGE {
        return Err(bad(
            "not one uncompressed change (compressed and document chunks are refused)",
        ));
    }
    let len = uleb(&mut cur).ok_or(bad("bad chunk length"))?;
    if usize::try_from(len).ok() != Some(cur.len()) {
        return Err(bad("the change chunk's length is not the payload's"));
    }
    let n_deps = uleb(&mut cur).ok_or(bad("bad dependency count"))?;
    if n_deps > (cur.len() / 32) as u64 {
        return Err(bad("more dependencies than the chunk holds"));
    }
    let mut deps = Vec::with_capacity(n_deps as usize);
    for _ in 0..n_deps {
        let d = take(&mut cur, 32).map_err(|_| bad("truncated dependency"))?;
        let mut h = [0u8; 32];
        h.copy_from_slice(d);
        deps.push(h);
    }
    let actor_len = uleb(&mut cur).ok_or(bad("bad actor length"))?;
    if actor_len > MAX_ACTOR_LEN as u64 {
        return Err(bad("actor id too long"));
    }
    let actor = take(&mut cur, actor_len as usize)
        .map_err(|_| bad("truncated actor id"))?
        .to_vec();
    let seq = uleb(&mut cur).ok_or(bad("bad sequence number"))?;
    Ok(ChangeHead { deps, actor, seq })
}

/// [`uleb`], for tests elsewhere in the crate.
#[cfg(test)]
pub(crate) fn tests_uleb(cur: &mut &[u8]) -> Option<u64> {
    uleb(cur)
}

/// Reads an unsigned LEB128 number of at most 64 bits.
fn uleb(cur: &mut &[u8]) -> Option<u64> {
    let mut out: u64 = 0;
    for i in 0..10 {
        let (&b, rest) = cur.split_first()?;
        *cur = rest;
        let part = u64::from(b & 0x7f);
        if i == 9 && part > 1 {
            return None;
        }
        out |= part << (7 * i);
        if b & 0x80 == 0 {
            return Some(out);
        }
    }
    None
}

fn take<'a>(cur: &mut &'a [u8], n: usize) -> Result<&'a [u8], BundleError> {
    if cur.len() < n {
        return Err(BundleError::Malformed("truncated"));
    }
    let (head, rest) = cur.split_at(n);
    *cur = rest;
    Ok(head)
}

fn take_u32(cur: &mut &[u8]) -> Result<u32, BundleError> {
    let b = take(cur, 4)?;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests;
