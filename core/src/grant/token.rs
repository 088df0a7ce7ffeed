//! Text forms for copy-paste and QR codes, and the signed envelope every token carries.
//!
//! A token is `HEARTH1` + one letter for its kind + the payload and a 4-byte checksum in
//! base32 (RFC 4648, upper case, no padding). Upper-case base32 uses only characters of the QR
//! alphanumeric mode, so a token fits a compact QR code. Parsing ignores case and whitespace,
//! rejects a wrong checksum (a mistyped or altered character) before anything else, and bounds
//! the size before decoding.
//!
//! The payload of every token is one or more [`Envelope`]s: canonical DAG-CBOR holding the exact
//! signed body bytes and the ed25519 signature over them. Bodies are signed as stored; decoding
//! re-encodes and compares, so each object has exactly one valid encoding.

use crate::crypto::sha256;
use data_encoding::BASE32_NOPAD;
use serde::{Deserialize, Serialize};

/// The longest token accepted, in characters.
pub const MAX_TOKEN_LEN: usize = 32 * 1024;
const PREFIX: &str = "HEARTH1";

/// What a token holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// A grant chain (root grant first).
    Grant,
    /// An access request.
    Request,
    /// An organisation credential for a professional.
    Credential,
    /// A node's contact card (peer id, name, role, certified agreement key).
    Card,
    /// A professional's use of the emergency access a patient arranged.
    Emergency,
    /// An organisation's log entry for one of its professionals' emergency uses.
    EmergencyLog,
}

impl TokenKind {
    fn letter(self) -> char {
        match self {
            TokenKind::Grant => 'G',
            TokenKind::Request => 'R',
            TokenKind::Credential => 'C',
            TokenKind::Card => 'I',
            TokenKind::Emergency => 'E',
            TokenKind::EmergencyLog => 'L',
        }
    }

    fn name(self) -> &'static str {
        match self {
            TokenKind::Grant => "grant",
            TokenKind::Request => "access request",
            TokenKind::Credential => "credential",
            TokenKind::Card => "contact card",
            TokenKind::Emergency => "emergency access",
            TokenKind::EmergencyLog => "emergency log entry",
        }
    }
}

/// Why a token's text or envelope could not be read. Every variant is the sender's (or a
/// copy-paste) fault; none quotes the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Longer than [`MAX_TOKEN_LEN`].
    #[error("token too long")]
    TooLong,
    /// Does not start with `HEARTH1`.
    #[error("not a Hearth token (it should start with HEARTH1)")]
    NotAToken,
    /// A token of another kind (e.g. a request where a grant was expected).
    #[error("this is a {found}, not a {expected}")]
    WrongKind {
        /// What was expected.
        expected: &'static str,
        /// What was found.
        found: &'static str,
    },
    /// Characters outside base32.
    #[error("token contains characters that cannot be in a token")]
    BadCharacters,
    /// The checksum does not match: a character was mistyped or altered.
    #[error("token checksum does not match (mistyped or altered)")]
    Checksum,
    /// The content is not a well-formed, canonically encoded object.
    #[error("token content is malformed: {0}")]
    Malformed(&'static str),
}

fn checksum(kind: TokenKind, payload: &[u8]) -> [u8; 4] {
    let mut letter = [0u8; 4];
    let h = sha256(&[
        b"hearth-token/v1",
        kind.letter().encode_utf8(&mut letter).as_bytes(),
        payload,
    ]);
    [h[0], h[1], h[2], h[3]]
}

/// Encodes `payload` as a token of `kind`.
pub fn encode(kind: TokenKind, payload: &[u8]) -> String {
    let mut data = payload.to_vec();
    data.extend_from_slice(&checksum(kind, payload));
    format!("{PREFIX}{}{}", kind.letter(), BASE32_NOPAD.encode(&data))
}

/// Decodes a token of `kind` to its payload.
pub fn decode(kind: TokenKind, text: &str) -> Result<Vec<u8>, TokenError> {
    if text.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong);
    }
    let clean: String = text
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let rest = clean.strip_prefix(PREFIX).ok_or(TokenError::NotAToken)?;
    let mut chars = rest.chars();
    let letter = chars.next().ok_or(TokenError::NotAToken)?;
    if letter != kind.letter() {
        let found = [
            TokenKind::Grant,
            TokenKind::Request,
            TokenKind::Credential,
            TokenKind::Card,
        ]
        .into_iter()
        .find(|k| k.letter() == letter)
        .map_or("unknown kind of token", TokenKind::name);
        return Err(TokenError::WrongKind {
            expected: kind.name(),
            found,
        });
    }
    let data = BASE32_NOPAD
        .decode(chars.as_str().as_bytes())
        .map_err(|_| TokenError::BadCharacters)?;
    if data.len() < 4 {
        return Err(TokenError::Malformed("too short"));
    }
    let (payload, sum) = data.split_at(data.len() - 4);
    if sum != checksum(kind, payload) {
        return Err(TokenError::Checksum);
    }
    Ok(payload.to_vec())
}

/// Signed bytes and their signature, as carried in tokens and stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// The canonical CBOR of the signed body.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// ed25519 signature over the body, under the body's domain.
    #[serde(with = "serde_bytes")]
    pub sig: Vec<u8>,
}

/// Encodes a list of envelopes (canonical CBOR).
pub fn encode_envelopes(envs: &[Envelope]) -> Vec<u8> {
    serde_ipld_dagcbor::to_vec(envs).unwrap_or_default()
}

/// Decodes a list of at most `max` envelopes, insisting on the canonical encoding.
pub fn decode_envelopes(bytes: &[u8], max: usize) -> Result<Vec<Envelope>, TokenError> {
    let envs: Vec<Envelope> = serde_ipld_dagcbor::from_slice(bytes)
        .map_err(|_| TokenError::Malformed("not a list of signed objects"))?;
    if envs.is_empty() || envs.len() > max {
        return Err(TokenError::Malformed("wrong number of signed objects"));
    }
    // The list itself is not signed; each body's canonical encoding is checked where it is
    // decoded (`decode_body`), and a grant's id is the hash of its signed body bytes.
    for e in &envs {
        if e.sig.len() != 64 {
            return Err(TokenError::Malformed("signature has the wrong length"));
        }
    }
    Ok(envs)
}

/// Decodes a canonically encoded body: one that is exactly the encoding of the value it decodes
/// to (module `canonical`).
pub fn decode_body<T: Serialize + serde::de::DeserializeOwned>(
    bytes: &[u8],
) -> Result<T, TokenError> {
    let body: T = serde_ipld_dagcbor::from_slice(bytes)
        .map_err(|_| TokenError::Malformed("body does not decode"))?;
    if !crate::canonical::is_encoding_of(&body, bytes) {
        return Err(TokenError::Malformed("body not canonically encoded"));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_case_and_whitespace() {
        let t = encode(TokenKind::Grant, b"hello world");
        assert!(t.starts_with("HEARTH1G"));
        assert_eq!(decode(TokenKind::Grant, &t).unwrap(), b"hello world");
        let messy = format!("  {}\n", t.to_lowercase());
        assert_eq!(decode(TokenKind::Grant, &messy).unwrap(), b"hello world");
        assert!(matches!(
            decode(TokenKind::Request, &t),
            Err(TokenError::WrongKind { .. })
        ));
    }

    proptest! {
        #[test]
        fn any_single_character_change_is_caught(payload in proptest::collection::vec(any::<u8>(), 1..200), pos in any::<prop::sample::Index>(), c in "[A-Z2-7]") {
            let t = encode(TokenKind::Grant, &payload);
            let i = 8 + pos.index(t.len() - 8);
            let c = c.chars().next().unwrap();
            prop_assume!(t.as_bytes()[i] as char != c);
            let mut bad = t.clone();
            bad.replace_range(i..i + 1, &c.to_string());
            prop_assert!(decode(TokenKind::Grant, &bad).is_err());
        }

        #[test]
        fn decode_never_panics(s in ".{0,300}") {
            let _ = decode(TokenKind::Grant, &s);
            let _ = decode_envelopes(s.as_bytes(), 4);
        }
    }
}
