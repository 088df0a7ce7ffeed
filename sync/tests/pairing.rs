//! Pairing a patient's new device, sans-I/O: the root holder's slot and the joiner wired by
//! hand, with a simulated clock, a seeded generator and the root holder's store work done as
//! the node does it ([`pairing::certify`]).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure panics with its location

use hearth_core::ids::PeerKey;
use hearth_core::keys::Identity;
use hearth_core::record::Vault;
use hearth_core::store::MemoryStore;
use hearth_core::test_utils::{TEST_NOW, TestRng, patient_record};
use hearth_sync::pairing::{
    self, CODE_PREFIX, CodeError, DEFAULT_TTL, JoinError, Joiner, LinkCode, LinkOutcome, Pairing,
    Step, Welcome,
};
use hearth_sync::protocol::{LinkMessage, Message};
use serde_bytes::ByteBuf;
use std::time::{Duration, Instant};

mod common;
use common::name;

/// The simulated clock's origin: any instant will do, only offsets matter.
#[allow(clippy::disallowed_methods)]
fn origin() -> Instant {
    Instant::now()
}

/// A patient's first device holding a record with one note, and its pairing slot.
struct Root {
    identity: Identity,
    vault: Vault<MemoryStore>,
    pairing: Pairing,
    rng: TestRng,
    now: Instant,
}

impl Root {
    fn new(seed: u64) -> Root {
        let mut rng = TestRng::new(seed);
        let vault = Vault::new(MemoryStore::default());
        let (identity, rid) = patient_record(&vault, "Edith", TEST_NOW, &mut rng);
        let mut rec = vault.open_record(&identity, &rid).unwrap();
        rec.add_entry(
            &name("notes"),
            &serde_json::json!({"text": "canary-link"}),
            TEST_NOW,
            &mut rng,
        )
        .unwrap();
        drop(rec);
        Root {
            identity,
            vault,
            pairing: Pairing::default(),
            rng,
            now: origin(),
        }
    }

    /// Opens a slot for `ttl` and parses its code.
    fn open(&mut self, ttl: Duration) -> (String, LinkCode) {
        let text = self
            .pairing
            .open(
                self.identity.peer(),
                &["/ip4/127.0.0.1/tcp/4001".to_string()],
                ttl,
                TEST_NOW,
                self.now,
                &mut self.rng,
            )
            .unwrap();
        assert!(text.starts_with(CODE_PREFIX));
        let code = LinkCode::parse(&text).unwrap();
        (text, code)
    }

    /// Answers one message from `peer`, as the node does (certifying in the store when asked).
    fn answer(&mut self, peer: PeerKey, m: Message) -> LinkMessage {
        let Message::Link(l) = m else {
            panic!("not a link message: {m:?}")
        };
        let me = self.identity.peer();
        match self.pairing.handle(me, peer, l, self.now, &mut self.rng) {
            Step::Answer(a) => a,
            Step::Certify(req) => {
                let c =
                    pairing::certify(&self.vault, &self.identity, &req, TEST_NOW, &mut self.rng);
                self.pairing.certified(me, peer, c, &mut self.rng)
            }
        }
    }

    /// Runs the whole exchange for `dev` with `code`, moving messages by hand.
    fn pair(&mut self, code: &LinkCode, dev: &Identity) -> Result<Welcome, JoinError> {
        let mut rng = TestRng::new(99);
        let mut j = Joiner::new(code, dev);
        let b = self.answer(dev.peer(), j.start(&mut rng));
        let join = j.on_pake(Message::Link(b), &mut rng)?;
        let w = self.answer(dev.peer(), join);
        j.on_welcome(Message::Link(w))
    }

    fn outcome(&mut self) -> Option<LinkOutcome> {
        self.pairing.outcome(self.now)
    }

    fn devices(&self) -> usize {
        let rid = self.identity.record_id().unwrap();
        let rec = self.vault.open_record(&self.identity, &rid).unwrap();
        rec.device_certs().len()
    }
}

fn new_device(name: &str, seed: u64) -> Identity {
    Identity::new_device(name.into(), &mut TestRng::new(seed))
}

/// `text` with the byte string under `key` in its CBOR body (base32 after the prefix) filled
/// with `fill`: the same code with another slot id or secret.
fn with_bytes(text: &str, key: &str, fill: u8) -> String {
    let mut bytes = data_encoding::BASE32_NOPAD
        .decode(text.trim_start_matches(CODE_PREFIX).as_bytes())
        .unwrap();
    let at = bytes
        .windows(key.len())
        .position(|w| w == key.as_bytes())
        .unwrap()
        + key.len();
    // A short byte string's header holds its length (major type 2: 0x40 + length).
    let len = usize::from(bytes[at] - 0x40);
    bytes[at + 1..at + 1 + len].fill(fill);
    // A forger recomputes the code's check (the start of a SHA-256: it catches typing, it is
    // no secret), as `pairing::code` makes it.
    let body_len = bytes.len() - 4;
    let h = hearth_core::crypto::sha256(&[b"hearth/link-code-check/v1", &bytes[..body_len]]);
    bytes[body_len..].copy_from_slice(&h[..4]);
    format!(
        "{CODE_PREFIX}{}",
        data_encoding::BASE32_NOPAD.encode(&bytes)
    )
}

#[test]
fn a_device_links_with_the_right_code_and_can_read_the_whole_record() {
    let mut root = Root::new(1);
    let (_, code) = root.open(DEFAULT_TTL);
    assert_eq!(code.peer, root.identity.peer());
    let dev = new_device("phone", 2);
    let w = root.pair(&code, &dev).unwrap();
    let rid = root.identity.record_id().unwrap();
    assert_eq!(w.record, rid);
    assert_eq!(
        root.outcome(),
        Some(LinkOutcome::Linked {
            peer: dev.peer(),
            name: "phone".into()
        })
    );
    // The root holder's auth document now certifies the device.
    let rec = root.vault.open_record(&root.identity, &rid).unwrap();
    assert!(rec.device_certs().iter().any(|c| c.peer == dev.peer()));
    // The device can set itself up with what it received, and holds a key for every section.
    let dev = dev.link_to(rid);
    let mine = Vault::new(MemoryStore::default());
    mine.register_linked(&rid, &w.wraps, TEST_NOW).unwrap();
    let held: Vec<_> = w.wraps.iter().map(|x| (x.section, x.epoch)).collect();
    for k in rec.keys_held() {
        assert!(held.contains(&k), "missing key {k:?}");
    }
    assert_eq!(dev.record_id(), Some(rid));
    assert!(!dev.holds_root_of(&rid));
    drop(rec);
    // A second use of the same code is refused.
    let again = new_device("tablet", 3);
    assert!(root.pair(&code, &again).is_err());
}

#[test]
fn a_wrong_code_fails_and_closes_the_slot_after_one_attempt() {
    let mut root = Root::new(4);
    let (good_text, good) = root.open(DEFAULT_TTL);
    // Same slot, other secret: the PAKE keys differ and the join does not open.
    let wrong = LinkCode::parse(&with_bytes(&good_text, "secret", 7)).unwrap();
    let err = root.pair(&wrong, &new_device("attacker", 5)).unwrap_err();
    assert!(matches!(err, JoinError::Refused(_)), "{err}");
    assert!(matches!(root.outcome(), Some(LinkOutcome::Failed(_))));
    // The genuine code no longer works either: one attempt per code.
    let err = root.pair(&good, &new_device("phone", 6)).unwrap_err();
    assert!(err.to_string().contains("no such link code"), "{err}");
    // And nothing was certified.
    assert_eq!(root.devices(), 1);
}

#[test]
fn an_unknown_slot_is_not_an_attempt() {
    let mut root = Root::new(7);
    let (good_text, good) = root.open(DEFAULT_TTL);
    let other = LinkCode::parse(&with_bytes(&good_text, "slot", 1)).unwrap();
    assert!(root.pair(&other, &new_device("x", 8)).is_err());
    // The real slot is still open.
    assert_eq!(root.outcome(), None);
    assert!(root.pair(&good, &new_device("phone", 9)).is_ok());
}

#[test]
fn the_join_must_come_from_the_device_that_started() {
    let mut root = Root::new(10);
    let (_, code) = root.open(DEFAULT_TTL);
    let (a, b) = (new_device("a", 11), new_device("b", 12));
    let mut rng = TestRng::new(13);
    let mut j = Joiner::new(&code, &a);
    let pake = root.answer(a.peer(), j.start(&mut rng));
    let join = j.on_pake(Message::Link(pake), &mut rng).unwrap();
    // Someone else replays the sealed join.
    let answer = root.answer(b.peer(), join);
    assert!(matches!(answer, LinkMessage::Refused { .. }));
    assert!(matches!(root.outcome(), Some(LinkOutcome::Failed(_))));
    assert_eq!(root.devices(), 1);
}

#[test]
fn the_slot_expires_by_simulated_time() {
    let mut root = Root::new(14);
    let ttl = Duration::from_secs(600);
    let (_, code) = root.open(ttl);
    root.now += ttl - Duration::from_millis(1);
    assert_eq!(root.outcome(), None);
    root.now += Duration::from_millis(1);
    assert_eq!(root.outcome(), Some(LinkOutcome::Expired));
    let err = root.pair(&code, &new_device("phone", 15)).unwrap_err();
    assert!(err.to_string().contains("no such link code"), "{err}");
    assert_eq!(root.devices(), 1);
    // The code says when it expires, by the wall clock.
    assert_eq!(code.expires, TEST_NOW.saturating_add_millis(600_000));
}

#[test]
fn an_expired_slot_refuses_a_start_in_flight() {
    // The attempt starts in time and the join arrives too late.
    let mut root = Root::new(16);
    let (_, code) = root.open(Duration::from_secs(60));
    let dev = new_device("phone", 17);
    let mut rng = TestRng::new(18);
    let mut j = Joiner::new(&code, &dev);
    let pake = root.answer(dev.peer(), j.start(&mut rng));
    let join = j.on_pake(Message::Link(pake), &mut rng).unwrap();
    root.now += Duration::from_secs(61);
    assert!(matches!(
        root.answer(dev.peer(), join),
        LinkMessage::Refused { .. }
    ));
    assert_eq!(root.outcome(), Some(LinkOutcome::Expired));
    assert_eq!(root.devices(), 1);
}

#[test]
fn a_tampered_welcome_is_refused() {
    let mut root = Root::new(19);
    let (_, code) = root.open(DEFAULT_TTL);
    let dev = new_device("phone", 20);
    let mut rng = TestRng::new(21);
    let mut j = Joiner::new(&code, &dev);
    let b = root.answer(dev.peer(), j.start(&mut rng));
    let join = j.on_pake(Message::Link(b), &mut rng).unwrap();
    let LinkMessage::Welcome { sealed } = root.answer(dev.peer(), join) else {
        panic!("no welcome")
    };
    let mut bad = sealed.to_vec();
    let n = bad.len();
    bad[n / 2] ^= 1;
    let err = j
        .on_welcome(Message::Link(LinkMessage::Welcome {
            sealed: ByteBuf::from(bad),
        }))
        .unwrap_err();
    assert!(err.is_integrity(), "{err}");
}

#[test]
fn damaged_codes_get_clear_errors() {
    for (text, want) in [
        ("", CodeError::NotACode),
        ("HEARTH1G-not-a-link", CodeError::NotACode),
        ("HEARTH1L!!!!", CodeError::NotBase32),
        ("HEARTH1LMFRGG", CodeError::Damaged),
    ] {
        assert_eq!(LinkCode::parse(text).unwrap_err(), want, "{text}");
    }
    assert_eq!(
        CodeError::NotBase32.to_string(),
        "that link code is damaged (not base32); copy it again"
    );
    let long = format!("{CODE_PREFIX}{}", "A".repeat(10_000));
    assert_eq!(LinkCode::parse(&long).unwrap_err(), CodeError::TooLong);
    // A real code survives case changes and line breaks (as from a QR scanner or an email).
    let mut root = Root::new(22);
    let (text, code) = root.open(DEFAULT_TTL);
    let mangled = format!("{}\n{}", &text[..20].to_lowercase(), &text[20..]);
    assert_eq!(LinkCode::parse(&mangled).unwrap().peer, code.peer);
    // One character mistyped anywhere, or the code cut short, is told as damaged at once.
    let body = &text[CODE_PREFIX.len()..];
    for at in (0..body.len()).step_by(7) {
        let mut typo: Vec<char> = body.chars().collect();
        typo[at] = if typo[at] == 'A' { 'B' } else { 'A' };
        let typo: String = typo.into_iter().collect();
        assert_eq!(
            LinkCode::parse(&format!("{CODE_PREFIX}{typo}")).unwrap_err(),
            CodeError::Damaged,
            "a typo at {at}"
        );
    }
    assert!(LinkCode::parse(&text[..text.len() - 8]).is_err());
}

#[test]
fn the_code_holds_no_record_id_or_name() {
    let mut root = Root::new(23);
    let (text, _) = root.open(DEFAULT_TTL);
    let bytes = data_encoding::BASE32_NOPAD
        .decode(text.trim_start_matches(CODE_PREFIX).as_bytes())
        .unwrap();
    let rid = root.identity.record_id().unwrap();
    assert!(!bytes.windows(32).any(|w| w == rid.0));
    assert!(!bytes.windows(5).any(|w| w == b"Edith"));
}
