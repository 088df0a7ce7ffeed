//! The link code's text form: `HEARTH1L` and the base32 of a small CBOR map followed by a
//! 4-byte check (the start of its SHA-256), so a code mistyped or cut short is told as damaged
//! at once rather than failing later at the key exchange.

use super::OpenError;
use hearth_core::ids::PeerKey;
use hearth_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use zeroize::Zeroizing;

/// The text form's prefix.
pub const CODE_PREFIX: &str = "HEARTH1L";
/// The most addresses a code carries.
const MAX_CODE_ADDRS: usize = 8;
/// The longest code accepted.
const MAX_CODE_LEN: usize = 4096;
/// Bytes of the check that ends a code.
const CHECK_LEN: usize = 4;

fn check_of(body: &[u8]) -> [u8; CHECK_LEN] {
    let h = hearth_core::crypto::sha256(&[b"hearth/link-code-check/v1", body]);
    [h[0], h[1], h[2], h[3]]
}

/// What a link code holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeBody {
    v: u8,
    /// The root holder's device key.
    peer: PeerKey,
    /// Where to reach it.
    addrs: Vec<String>,
    /// Which slot.
    slot: ByteBuf,
    /// The PAKE password.
    secret: ByteBuf,
    /// Until when.
    expires: Timestamp,
}

/// A parsed link code (the secret zeroizes on drop).
pub struct LinkCode {
    /// The root holder's device key.
    pub peer: PeerKey,
    /// Where to reach it.
    pub addrs: Vec<String>,
    /// Until when the code is valid.
    pub expires: Timestamp,
    pub(super) slot: Vec<u8>,
    pub(super) secret: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for LinkCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkCode")
            .field("peer", &self.peer)
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

/// Why a text is not a usable link code (the user's typing or copying, never an attack that
/// gets anywhere: the code is checked again by the PAKE).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodeError {
    /// Longer than any code.
    #[error("that link code is too long")]
    TooLong,
    /// Not a link code at all.
    #[error("that link code does not start with HEARTH1L (is it a link code?)")]
    NotACode,
    /// Not base32.
    #[error("that link code is damaged (not base32); copy it again")]
    NotBase32,
    /// Does not decode.
    #[error("that link code is damaged; copy it again")]
    Damaged,
    /// Made by a newer version.
    #[error("that link code comes from a newer version of hearth")]
    NewerVersion,
    /// No address, or too many.
    #[error("that link code carries no usable address")]
    NoAddress,
}

/// The text of a code.
pub(super) fn encode(
    peer: PeerKey,
    addrs: &[String],
    slot: &[u8],
    secret: &[u8],
    expires: Timestamp,
) -> Result<String, OpenError> {
    let body = CodeBody {
        v: 1,
        peer,
        addrs: addrs.iter().take(MAX_CODE_ADDRS).cloned().collect(),
        slot: ByteBuf::from(slot.to_vec()),
        secret: ByteBuf::from(secret.to_vec()),
        expires,
    };
    let mut bytes =
        Zeroizing::new(serde_ipld_dagcbor::to_vec(&body).map_err(|_| OpenError::Encode)?);
    let check = check_of(&bytes);
    bytes.extend_from_slice(&check);
    Ok(format!(
        "{CODE_PREFIX}{}",
        data_encoding::BASE32_NOPAD.encode(&bytes)
    ))
}

impl LinkCode {
    /// Reads a code's text form, checking its shape (not yet whether it is still valid).
    pub fn parse(text: &str) -> Result<LinkCode, CodeError> {
        let t: String = text
            .split_whitespace()
            .collect::<String>()
            .to_ascii_uppercase();
        if t.len() > MAX_CODE_LEN {
            return Err(CodeError::TooLong);
        }
        let body = t.strip_prefix(CODE_PREFIX).ok_or(CodeError::NotACode)?;
        let bytes = data_encoding::BASE32_NOPAD
            .decode(body.as_bytes())
            .map_err(|_| CodeError::NotBase32)?;
        let bytes = Zeroizing::new(bytes);
        let (body, check) = bytes
            .split_at_checked(bytes.len().saturating_sub(CHECK_LEN))
            .ok_or(CodeError::Damaged)?;
        if check.len() != CHECK_LEN || check != check_of(body) {
            return Err(CodeError::Damaged);
        }
        let b: CodeBody = serde_ipld_dagcbor::from_slice(body).map_err(|_| CodeError::Damaged)?;
        if b.v != 1 {
            return Err(CodeError::NewerVersion);
        }
        if b.slot.len() != 8 || b.secret.len() != 16 {
            return Err(CodeError::Damaged);
        }
        if b.addrs.is_empty() || b.addrs.len() > MAX_CODE_ADDRS {
            return Err(CodeError::NoAddress);
        }
        let secret = Zeroizing::new(b.secret.to_vec());
        Ok(LinkCode {
            peer: b.peer,
            addrs: b.addrs.clone(),
            expires: b.expires,
            slot: b.slot.to_vec(),
            secret,
        })
    }
}
