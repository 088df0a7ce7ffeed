//! Web UI sessions: the passphrase unlocks the node once per session, over the owner-only
//! socket, never over TCP.
//!
//! `hearth ui` (a command run inside the daemon, its passphrase checked there) leaves the
//! unlocked identity here under a one-time login code and prints the URL
//! `http://127.0.0.1:PORT/#login=CODE`. The page (the fragment never reaches the server or a
//! Referer) posts the code to `POST /api/v1/session` and receives a session token in
//! exchange; the code is spent. The page keeps the token in `sessionStorage` (per origin, so
//! per port) and sends it as `Authorization: Bearer TOKEN`. There are no cookies: a browser
//! sends a cookie for 127.0.0.1 to every port of it, so another local user's server could
//! collect one, and a cookie-less API needs no CSRF defence (a page elsewhere cannot set the
//! header without a CORS preflight, which this API never grants).
//!
//! Codes and tokens are 256-bit random strings, stored only as SHA-256 digests. Everything
//! here is bounded: [`MAX_LOGINS`] codes waiting ([`LOGIN_TTL`] each), [`MAX_SESSIONS`]
//! sessions (ended after [`IDLE`] without a request, and [`LIFETIME`] at most); the oldest
//! goes first. Times are this process's monotonic clock, never a value a client sent. The
//! identity and passphrase zeroize when the last request using a session ends after it is
//! dropped.

use hearth_core::keys::Identity;
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Login codes waiting to be redeemed at once.
pub const MAX_LOGINS: usize = 4;
/// How long a login code stays valid.
pub const LOGIN_TTL: Duration = Duration::from_secs(120);
/// Sessions open at once.
pub const MAX_SESSIONS: usize = 8;
/// A session ends after this long without a request.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after it began, whatever its use.
pub const LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// What a session acts with: the identity the passphrase unlocked, and the passphrase (the
/// commands that re-encrypt the keystore need it).
pub struct Unlocked {
    /// The node's identity.
    pub identity: Identity,
    /// The passphrase that unlocked it.
    pub passphrase: Zeroizing<String>,
}

type Digest32 = [u8; 32];

struct Login {
    code: Digest32,
    keys: Unlocked,
    expires: Instant,
}

struct Session {
    token: Digest32,
    keys: Arc<Unlocked>,
    began: Instant,
    used: Instant,
}

#[derive(Default)]
struct Table {
    logins: Vec<Login>,
    sessions: Vec<Session>,
}

/// The daemon's login codes and sessions.
#[derive(Default)]
pub struct Sessions {
    table: Mutex<Table>,
}

fn digest(s: &str) -> Digest32 {
    Sha256::digest(s.as_bytes()).into()
}

/// A fresh 256-bit secret in base32 (lower case, no padding).
fn secret() -> Zeroizing<String> {
    let mut b = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut b[..]).expect("the operating system's random source failed");
    Zeroizing::new(
        data_encoding::BASE32_NOPAD
            .encode(&b[..])
            .to_ascii_lowercase(),
    )
}

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock leaves a consistent table (every change is one push
        // or retain): keep serving.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn expire(t: &mut Table, now: Instant) {
        t.logins.retain(|l| l.expires > now);
        t.sessions.retain(|s| {
            now.duration_since(s.used) < IDLE && now.duration_since(s.began) < LIFETIME
        });
    }

    /// Leaves `keys` under a new one-time login code, valid for [`LOGIN_TTL`]; returns the
    /// code. The oldest waiting code is dropped when [`MAX_LOGINS`] wait.
    pub fn issue_login(&self, keys: Unlocked) -> Zeroizing<String> {
        let code = secret();
        let now = Instant::now();
        let mut t = self.lock();
        Self::expire(&mut t, now);
        if t.logins.len() >= MAX_LOGINS {
            t.logins.remove(0);
        }
        t.logins.push(Login {
            code: digest(&code),
            keys,
            expires: now + LOGIN_TTL,
        });
        code
    }

    /// Spends a login code: a new session and its token, or `None` for an unknown, spent or
    /// expired code. The oldest session ends when [`MAX_SESSIONS`] are open.
    pub fn redeem(&self, code: &str) -> Option<(Zeroizing<String>, Arc<Unlocked>)> {
        let now = Instant::now();
        let d = digest(code.trim());
        let mut t = self.lock();
        Self::expire(&mut t, now);
        let i = t.logins.iter().position(|l| l.code == d)?;
        let login = t.logins.remove(i);
        if t.sessions.len() >= MAX_SESSIONS {
            t.sessions.sort_by_key(|s| s.used);
            t.sessions.remove(0);
        }
        let token = secret();
        let keys = Arc::new(login.keys);
        t.sessions.push(Session {
            token: digest(&token),
            keys: keys.clone(),
            began: now,
            used: now,
        });
        Some((token, keys))
    }

    /// The session of `token`, if it is open (and marks it used).
    pub fn find(&self, token: &str) -> Option<Arc<Unlocked>> {
        let now = Instant::now();
        let d = digest(token.trim());
        let mut t = self.lock();
        Self::expire(&mut t, now);
        let s = t.sessions.iter_mut().find(|s| s.token == d)?;
        s.used = now;
        Some(s.keys.clone())
    }

    /// Ends the session of `token`; false if there was none.
    pub fn end(&self, token: &str) -> bool {
        let d = digest(token.trim());
        let mut t = self.lock();
        let before = t.sessions.len();
        t.sessions.retain(|s| s.token != d);
        t.sessions.len() != before
    }

    /// Sessions open now (for tests and status).
    pub fn open(&self) -> usize {
        let mut t = self.lock();
        Self::expire(&mut t, Instant::now());
        t.sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_core::keys::Role;

    fn keys() -> Unlocked {
        Unlocked {
            identity: Identity::generate(Role::Patient, "Edith".into(), &mut crate::os::os_rng()).0,
            passphrase: Zeroizing::new("correct horse".into()),
        }
    }

    #[test]
    fn a_code_is_spent_once_and_gives_a_session() {
        let s = Sessions::default();
        let code = s.issue_login(keys());
        let (token, _) = s.redeem(&code).expect("first use");
        assert!(s.redeem(&code).is_none(), "a code is one-time");
        assert!(s.find(&token).is_some());
        assert!(s.find("not-a-token").is_none());
        assert!(s.end(&token));
        assert!(s.find(&token).is_none());
    }

    #[test]
    fn codes_and_sessions_are_bounded() {
        let s = Sessions::default();
        let codes: Vec<_> = (0..MAX_LOGINS + 2).map(|_| s.issue_login(keys())).collect();
        assert!(s.redeem(&codes[0]).is_none(), "the oldest code was dropped");
        for c in &codes[2..] {
            assert!(s.redeem(c).is_some());
        }
        for _ in 0..MAX_SESSIONS + 3 {
            let c = s.issue_login(keys());
            s.redeem(&c).expect("redeem");
        }
        assert_eq!(s.open(), MAX_SESSIONS);
    }
}
