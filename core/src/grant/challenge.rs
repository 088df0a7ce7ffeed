//! Proof of key possession for session handshakes: a grant is never a bearer token.
//!
//! The verifier sends 32 random bytes; the holder signs them together with a context naming the
//! session (both peers and the protocol), so a response cannot be replayed in another session
//! or to another verifier.

use crate::crypto::{self, CryptoError, Domain};
use crate::ids::PeerKey;
use ed25519_dalek::SigningKey;
use rand_core::CryptoRng;

/// A fresh challenge.
pub fn new_challenge(rng: &mut impl CryptoRng) -> [u8; 32] {
    let mut c = [0u8; 32];
    rng.fill_bytes(&mut c);
    c
}

/// The holder's response: a signature over the challenge and the session context.
pub fn respond(
    key: &SigningKey,
    challenge: &[u8; 32],
    verifier: &PeerKey,
    protocol: &str,
) -> [u8; 64] {
    crypto::sign(
        key,
        Domain::Handshake,
        &[challenge, &verifier.0, protocol.as_bytes()],
    )
}

/// Checks that `holder` answered `challenge` for this verifier and protocol.
pub fn check(
    holder: &PeerKey,
    challenge: &[u8; 32],
    verifier: &PeerKey,
    protocol: &str,
    response: &[u8; 64],
) -> Result<(), CryptoError> {
    let key = holder.verifying_key()?;
    crypto::verify(
        &key,
        Domain::Handshake,
        &[challenge, &verifier.0, protocol.as_bytes()],
        response,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::signing_key;
    use crate::test_utils::TestRng;

    #[test]
    fn response_binds_challenge_verifier_and_protocol() {
        let mut rng = TestRng::new(1);
        let holder = signing_key(&mut rng);
        let hp = PeerKey(holder.verifying_key().to_bytes());
        let v1 = PeerKey([1; 32]);
        let c = new_challenge(&mut rng);
        let r = respond(&holder, &c, &v1, "/hearth/sync/1");
        assert!(check(&hp, &c, &v1, "/hearth/sync/1", &r).is_ok());
        assert!(check(&hp, &new_challenge(&mut rng), &v1, "/hearth/sync/1", &r).is_err());
        assert!(check(&hp, &c, &PeerKey([2; 32]), "/hearth/sync/1", &r).is_err());
        assert!(check(&hp, &c, &v1, "/hearth/store/1", &r).is_err());
        let other = PeerKey(signing_key(&mut rng).verifying_key().to_bytes());
        assert!(check(&other, &c, &v1, "/hearth/sync/1", &r).is_err());
    }
}
