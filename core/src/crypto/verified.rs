//! Memos of the signatures this process has already verified, and of the public keys it has
//! already parsed.
//!
//! Opening a record checks the same signatures again and again: the record root's signature on
//! every key wrap and device certificate, the newest bundle of each author's log, the links of
//! a grant chain. A sync step opens a record several times, and a daemon opens the same records
//! all day. Signature validity is a pure function of the public key, the message and the
//! signature, so once `verify_strict` has accepted a triple, the same triple is accepted again
//! from this memo without the curve arithmetic.
//!
//! Each entry is the SHA-256 of key, signature and message: nothing secret, and a hit needs the
//! very bytes that verified (a collision would be a SHA-256 collision). Only successes are
//! kept, so a forged or altered signature is verified, and refused, every time. The memo is
//! bounded: two generations of at most [`GENERATION`] digests each; when the current one fills
//! it becomes the previous one and the oldest is dropped. A stranger who sends many valid
//! signatures can only push others out, which costs time, never correctness.

use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::{LazyLock, Mutex};

/// Digests in one generation (32 bytes each, so the memo stays under about 5 MB).
pub(crate) const GENERATION: usize = 65_536;

/// Two generations of 32-byte values, at most `cap` in each.
#[derive(Default)]
struct Memo {
    current: HashSet<[u8; 32]>,
    previous: HashSet<[u8; 32]>,
}

impl Memo {
    fn contains(&self, d: &[u8; 32]) -> bool {
        self.current.contains(d) || self.previous.contains(d)
    }

    fn insert(&mut self, d: [u8; 32], cap: usize) {
        if self.current.len() >= cap {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(d);
    }
}

static MEMO: LazyLock<Mutex<Memo>> = LazyLock::new(|| Mutex::new(Memo::default()));

/// How a triple was verified: one `verify_strict`, or as part of a batch (whose equation is
/// not the same as the strict one's, so neither vouches for the other).
#[derive(Clone, Copy)]
pub(super) enum How {
    Strict,
    Batch,
}

/// The digest naming one (key, signature, message) triple verified `how`.
pub(super) fn digest(how: How, key: &[u8; 32], signature: &[u8; 64], message: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(match how {
        How::Strict => b"strict",
        How::Batch => b"batch\0",
    });
    h.update(key);
    h.update(signature);
    h.update(message);
    h.finalize().into()
}

/// Whether the triple named by `d` has verified before in this process.
pub(super) fn seen(d: &[u8; 32]) -> bool {
    all_seen(std::slice::from_ref(d))
}

/// Whether every triple named in `ds` has verified before in this process.
pub(super) fn all_seen(ds: &[[u8; 32]]) -> bool {
    // A poisoned lock (a panic elsewhere while holding it) only costs the memo.
    MEMO.lock()
        .map(|m| ds.iter().all(|d| m.contains(d)))
        .unwrap_or(false)
}

/// Records that the triple named by `d` verified.
pub(super) fn remember(d: [u8; 32]) {
    remember_all(&[d]);
}

/// Records that the triples named in `ds` verified.
pub(super) fn remember_all(ds: &[[u8; 32]]) {
    if let Ok(mut m) = MEMO.lock() {
        for d in ds {
            m.insert(*d, GENERATION);
        }
    }
}

/// X25519 public keys that passed `check` (not of small order), by their bytes.
static AGREEMENT_KEYS: LazyLock<Mutex<Memo>> = LazyLock::new(|| Mutex::new(Memo::default()));

/// Whether the X25519 public key `bytes` passes `check`, from the memo when it passed before
/// (the check is a scalar multiplication; a node's own card and its peers' keys are checked at
/// every sync step). Only keys that passed are kept: a bad key is refused afresh every time.
pub(super) fn agreement_key_ok(bytes: &[u8; 32], check: impl FnOnce(&[u8; 32]) -> bool) -> bool {
    if AGREEMENT_KEYS.lock().is_ok_and(|m| m.contains(bytes)) {
        return true;
    }
    let ok = check(bytes);
    if ok && let Ok(mut m) = AGREEMENT_KEYS.lock() {
        m.insert(*bytes, KEY_GENERATION);
    }
    ok
}

/// Digests one [`witnessing`] scope collects at most (more are not named).
pub(crate) const WITNESSED: usize = 4_096;

thread_local! {
    /// The digests accepted on this thread while a [`witnessing`] scope is open.
    pub(super) static WITNESS: RefCell<Option<Vec<[u8; 32]>>> = const { RefCell::new(None) };
}

/// Notes that the triple named by `d` was accepted (verified now, or from the memo), for the
/// [`witnessing`] scope open on this thread, if any.
pub(super) fn accepted(d: &[u8; 32]) {
    WITNESS.with(|w| {
        if let Some(seen) = w.borrow_mut().as_mut()
            && seen.len() < WITNESSED
        {
            seen.push(*d);
        }
    });
}

/// Closes a [`witnessing`] scope however it ends (a panic unwinding through it included):
/// puts back the scope around it, which takes this one's digests too.
struct Scope(Option<Option<Vec<[u8; 32]>>>);

impl Scope {
    fn open() -> Scope {
        Scope(Some(WITNESS.with(|w| w.replace(Some(Vec::new())))))
    }

    fn close(mut self) -> Vec<[u8; 32]> {
        self.restore()
    }

    fn restore(&mut self) -> Vec<[u8; 32]> {
        let Some(outer) = self.0.take() else {
            return Vec::new();
        };
        let seen = WITNESS.with(|w| w.replace(outer)).unwrap_or_default();
        WITNESS.with(|w| {
            if let Some(o) = w.borrow_mut().as_mut() {
                let room = WITNESSED.saturating_sub(o.len());
                o.extend(seen.iter().take(room));
            }
        });
        seen
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        self.restore();
    }
}

/// Runs `f` and returns, with its result, the digests of every signature it accepted on this
/// thread, at most [`WITNESSED`] (scopes nest: an inner scope's digests are the outer one's
/// too).
pub(crate) fn witnessing<R>(f: impl FnOnce() -> R) -> (R, Vec<[u8; 32]>) {
    let scope = Scope::open();
    let r = f();
    (r, scope.close())
}

/// Public keys in one generation of the parsed-key memo (about 200 bytes each).
const KEY_GENERATION: usize = 4_096;

/// Two generations of parsed public keys, by their bytes.
#[derive(Default)]
struct Keys {
    current: HashMap<[u8; 32], VerifyingKey>,
    previous: HashMap<[u8; 32], VerifyingKey>,
}

static KEYS: LazyLock<Mutex<Keys>> = LazyLock::new(|| Mutex::new(Keys::default()));

/// `bytes` parsed as an ed25519 public key, from the memo when parsed before (decompressing a
/// point takes a square root; a record root or a device key is parsed at every open). Only
/// keys that parsed are kept: invalid bytes are refused afresh every time.
pub(super) fn parsed_key(bytes: &[u8; 32]) -> Option<VerifyingKey> {
    if let Ok(k) = KEYS.lock()
        && let Some(v) = k.current.get(bytes).or_else(|| k.previous.get(bytes))
    {
        return Some(*v);
    }
    let v = VerifyingKey::from_bytes(bytes).ok()?;
    if let Ok(mut k) = KEYS.lock() {
        if k.current.len() >= KEY_GENERATION {
            k.previous = std::mem::take(&mut k.current);
        }
        k.current.insert(*bytes, v);
    }
    Some(v)
}

/// Digests held now (both generations).
#[cfg(test)]
pub(super) fn len() -> usize {
    MEMO.lock()
        .map(|m| m.current.len() + m.previous.len())
        .unwrap_or(0)
}
