//! Which public keys may not sign: the points of small order, told from their 32 bytes.
//!
//! A batch check of ed25519 signatures (unlike `verify_strict`) accepts a signature by a key of
//! small order, which anyone can forge for such a key. So every batch refuses those keys
//! first. `VerifyingKey::is_weak` finds them with curve arithmetic (three doublings and a
//! comparison); this compares bytes instead, which matters to a verifier meeting new keys all
//! the time (a relay, a cold check of a grant chain).
//!
//! A key of small order is one of the eight points of order dividing 8. A point's encoding is
//! its y coordinate (taken mod p) and the sign of its x coordinate, and the points sharing a
//! y are one point and its negation, of the same order. So a key that decodes to a point is of
//! small order exactly when its bytes, with the sign bit cleared, are an encoding of the y of
//! one of the eight: the canonical one, or y + p when that is below 2^255 (y < 19).

use curve25519_dalek::constants::EIGHT_TORSION;
use std::sync::LazyLock;

/// Every encoding, sign bit cleared, of the y coordinate of a point of small order.
static SMALL_ORDER_YS: LazyLock<Vec<[u8; 32]>> = LazyLock::new(|| {
    let mut ys: Vec<[u8; 32]> = Vec::new();
    for point in EIGHT_TORSION {
        let mut y = point.compress().to_bytes();
        y[31] &= 0x7f;
        // y < 19 has a second encoding, y + p = y + 2^255 - 19, below 2^255.
        if y[0] < 19 && y[1..].iter().all(|b| *b == 0) {
            let mut plus_p = [0xff; 32];
            plus_p[0] = 0xed + y[0];
            plus_p[31] = 0x7f;
            ys.push(plus_p);
        }
        ys.push(y);
    }
    ys.sort_unstable();
    ys.dedup();
    ys
});

/// Whether `key`, the bytes of an ed25519 public key that decodes to a point, is of small
/// order (`VerifyingKey::is_weak`).
pub(crate) fn is_small_order(key: &[u8; 32]) -> bool {
    let mut y = *key;
    y[31] &= 0x7f;
    SMALL_ORDER_YS.contains(&y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::TestRng;
    use ed25519_dalek::VerifyingKey;

    #[test]
    fn there_are_seven_encodings_of_five_ys() {
        // 1, -1, 0, and the two ys of the points of order 8; 0 and 1 have a second encoding.
        assert_eq!(SMALL_ORDER_YS.len(), 7);
    }

    #[test]
    fn the_bytes_say_what_the_curve_arithmetic_says() {
        let mut listed: Vec<[u8; 32]> = SMALL_ORDER_YS.clone();
        for y in SMALL_ORDER_YS.iter() {
            let mut negative = *y;
            negative[31] |= 0x80;
            listed.push(negative);
        }
        // Every encoding listed, with either sign bit, decodes to a point of small order.
        for bytes in &listed {
            let key = VerifyingKey::from_bytes(bytes).unwrap();
            assert!(key.is_weak() && is_small_order(bytes), "{bytes:?}");
        }
        // Fresh keys, and ys one or two off those listed, in either direction.
        let mut others = Vec::new();
        let mut rng = TestRng::new(9);
        for _ in 0..2_000 {
            others.push(
                crate::keys::signing_key(&mut rng)
                    .verifying_key()
                    .to_bytes(),
            );
        }
        for y in &listed {
            for delta in [1u8, 2] {
                let mut up = *y;
                up[0] = up[0].wrapping_add(delta);
                let mut down = *y;
                down[0] = down[0].wrapping_sub(delta);
                others.extend([up, down]);
            }
        }
        let mut decoded = 0;
        for bytes in &others {
            if let Ok(key) = VerifyingKey::from_bytes(bytes) {
                assert_eq!(is_small_order(bytes), key.is_weak(), "{bytes:?}");
                decoded += 1;
            }
        }
        assert!(decoded > 2_000);
    }
}
