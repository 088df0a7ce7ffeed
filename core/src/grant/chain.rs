//! A chain's encodings: the `HEARTH1G…` token people pass around, and the bytes a node stores.

use super::token::{self, Envelope, TokenKind};
use super::{Grant, MAX_CHAIN, Refusal};

/// Encodes a chain (root first) as a `HEARTH1G…` token.
pub fn chain_to_token(chain: &[Grant]) -> String {
    token::encode(TokenKind::Grant, &chain_to_bytes(chain))
}

/// Parses a `HEARTH1G…` token into a chain (structure only; verify with
/// [`verify_chain`](super::verify_chain)).
pub fn chain_from_token(text: &str) -> Result<Vec<Grant>, Refusal> {
    let payload = token::decode(TokenKind::Grant, text)?;
    chain_from_bytes(&payload)
}

/// Parses an encoded chain (as stored).
pub fn chain_from_bytes(bytes: &[u8]) -> Result<Vec<Grant>, Refusal> {
    let envs = token::decode_envelopes(bytes, MAX_CHAIN)?;
    envs.into_iter().map(Grant::from_envelope).collect()
}

/// Encodes a chain for storage.
pub fn chain_to_bytes(chain: &[Grant]) -> Vec<u8> {
    let envs: Vec<Envelope> = chain.iter().map(|g| g.envelope.clone()).collect();
    token::encode_envelopes(&envs)
}
