#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use hearth_core::keys::Role;
use hearth_core::record::{NewRecord, Vault};
use hearth_core::section::SectionName;
use hearth_core::store::MemoryStore;

fn t() -> Timestamp {
    Timestamp::from_millis(1_800_000_000_000)
}

/// A patient's first device holding a record with one note.
fn patient() -> Shared<MemoryStore> {
    let mut rng = crate::commands::os_rng();
    let (identity, _) = Identity::generate(Role::Patient, "Edith".into(), &mut rng);
    let vault = Vault::new(MemoryStore::default());
    let rid = vault
        .create_record(&identity, NewRecord::default(), t(), &mut rng)
        .unwrap();
    let mut rec = vault.open_record(&identity, &rid).unwrap();
    rec.add_entry(
        &"notes".parse::<SectionName>().unwrap(),
        &serde_json::json!({"text": "canary-link"}),
        t(),
        &mut rng,
    )
    .unwrap();
    drop(rec);
    Shared { vault, identity }
}

fn new_device(name: &str) -> Identity {
    Identity::new_device(name.into(), &mut crate::commands::os_rng())
}

fn open_slot(sh: &Shared<MemoryStore>, ttl: Duration) -> (Pairing, LinkCode) {
    let pairing = Pairing::default();
    let text = pairing
        .open(
            sh.identity.peer(),
            &["/ip4/127.0.0.1/tcp/4001".to_string()],
            ttl,
            t(),
        )
        .unwrap();
    assert!(text.starts_with(CODE_PREFIX));
    (pairing, LinkCode::parse(&text).unwrap())
}

fn link_msg(m: Message) -> LinkMessage {
    match m {
        Message::Link(l) => l,
        other => panic!("not a link message: {other:?}"),
    }
}

/// Runs the whole exchange, moving messages by hand.
fn pair(
    sh: &Shared<MemoryStore>,
    pairing: &Pairing,
    code: &LinkCode,
    dev: &Identity,
) -> Result<Welcome, Failure> {
    let mut j = Joiner::new(code, dev);
    let a = link_msg(j.start());
    let b = respond(sh, pairing, dev.peer(), a, t());
    let join = j.on_pake(Message::Link(b))?;
    let w = respond(sh, pairing, dev.peer(), link_msg(join), t());
    j.on_welcome(Message::Link(w))
}

#[test]
fn a_device_links_and_can_read_the_whole_record() {
    let sh = patient();
    let (pairing, code) = open_slot(&sh, DEFAULT_TTL);
    assert_eq!(code.peer, sh.identity.peer());
    let dev = new_device("phone");
    let w = pair(&sh, &pairing, &code, &dev).unwrap();
    let rid = sh.identity.record_id().unwrap();
    assert_eq!(w.record, rid);
    assert_eq!(
        pairing.outcome(),
        Some(LinkOutcome::Linked {
            peer: dev.peer(),
            name: "phone".into()
        })
    );
    // The root holder's auth document now certifies the device.
    let rec = sh.vault.open_record(&sh.identity, &rid).unwrap();
    assert!(rec.device_certs().iter().any(|c| c.peer == dev.peer()));
    // The device can set itself up with what it received, and holds a key for every section.
    let dev = dev.link_to(rid);
    let mine = Vault::new(MemoryStore::default());
    mine.register_linked(&rid, &w.wraps, t()).unwrap();
    let held: Vec<_> = w.wraps.iter().map(|x| (x.section, x.epoch)).collect();
    for k in rec.keys_held() {
        assert!(held.contains(&k), "missing key {k:?}");
    }
    assert_eq!(dev.record_id(), Some(rid));
    assert!(!dev.holds_root_of(&rid));
    // A second use of the same code is refused.
    let again = new_device("tablet");
    assert!(pair(&sh, &pairing, &code, &again).is_err());
}

#[test]
fn a_wrong_code_closes_the_slot_after_one_attempt() {
    let sh = patient();
    let (pairing, good) = open_slot(&sh, DEFAULT_TTL);
    let (_, mut wrong) = open_slot(&sh, DEFAULT_TTL);
    // Same slot, other secret: the PAKE keys differ and the join does not open.
    wrong.slot = good.slot.clone();
    let dev = new_device("attacker");
    let err = pair(&sh, &pairing, &wrong, &dev).err().unwrap();
    assert_eq!(err.code, code::REFUSED);
    assert!(matches!(pairing.outcome(), Some(LinkOutcome::Failed(_))));
    // The genuine code no longer works either: one attempt per code.
    let err = pair(&sh, &pairing, &good, &new_device("phone"))
        .err()
        .unwrap();
    assert!(err.message.contains("no such link code"), "{}", err.message);
    // And nothing was certified.
    let rid = sh.identity.record_id().unwrap();
    let rec = sh.vault.open_record(&sh.identity, &rid).unwrap();
    assert_eq!(rec.device_certs().len(), 1);
}

#[test]
fn an_unknown_slot_is_not_an_attempt() {
    let sh = patient();
    let (pairing, good) = open_slot(&sh, DEFAULT_TTL);
    let (_, mut other) = open_slot(&sh, DEFAULT_TTL);
    other.secret = good.secret.clone();
    assert!(pair(&sh, &pairing, &other, &new_device("x")).is_err());
    // The real slot is still open.
    assert_eq!(pairing.outcome(), None);
    assert!(pair(&sh, &pairing, &good, &new_device("phone")).is_ok());
}

#[test]
fn the_join_must_come_from_the_device_that_started() {
    let sh = patient();
    let (pairing, code) = open_slot(&sh, DEFAULT_TTL);
    let a = new_device("a");
    let b = new_device("b");
    let mut j = Joiner::new(&code, &a);
    let start = link_msg(j.start());
    let pake = respond(&sh, &pairing, a.peer(), start, t());
    let join = link_msg(j.on_pake(Message::Link(pake)).unwrap());
    // Someone else replays the sealed join.
    let answer = respond(&sh, &pairing, b.peer(), join, t());
    assert!(matches!(answer, LinkMessage::Refused { .. }));
    assert!(matches!(pairing.outcome(), Some(LinkOutcome::Failed(_))));
}

#[test]
fn an_expired_code_is_refused() {
    let sh = patient();
    let (pairing, code) = open_slot(&sh, Duration::from_millis(0));
    std::thread::sleep(Duration::from_millis(5));
    assert!(pair(&sh, &pairing, &code, &new_device("phone")).is_err());
    assert_eq!(pairing.outcome(), Some(LinkOutcome::Expired));
}

#[test]
fn a_tampered_welcome_is_refused() {
    let sh = patient();
    let (pairing, code) = open_slot(&sh, DEFAULT_TTL);
    let dev = new_device("phone");
    let mut j = Joiner::new(&code, &dev);
    let b = respond(&sh, &pairing, dev.peer(), link_msg(j.start()), t());
    let join = link_msg(j.on_pake(Message::Link(b)).unwrap());
    let w = respond(&sh, &pairing, dev.peer(), join, t());
    let LinkMessage::Welcome { sealed } = w else {
        panic!("no welcome")
    };
    let mut bad = sealed.to_vec();
    let n = bad.len();
    bad[n / 2] ^= 1;
    let err = j
        .on_welcome(Message::Link(LinkMessage::Welcome {
            sealed: ByteBuf::from(bad),
        }))
        .err()
        .unwrap();
    assert_eq!(err.code, code::INTEGRITY);
}

#[test]
fn damaged_codes_get_clear_errors() {
    for (text, what) in [
        ("", "HEARTH1L"),
        ("HEARTH1G-not-a-link", "HEARTH1L"),
        ("HEARTH1L!!!!", "base32"),
        ("HEARTH1LMFRGG", "damaged"),
    ] {
        let err = LinkCode::parse(text).unwrap_err();
        assert_eq!(err.code, code::INVALID);
        assert!(err.message.contains(what), "{text}: {}", err.message);
    }
    let long = format!("{CODE_PREFIX}{}", "A".repeat(10_000));
    assert!(LinkCode::parse(&long).is_err());
    // A real code survives case changes and line breaks (as from a QR scanner or an email).
    let sh = patient();
    let (_, code) = open_slot(&sh, DEFAULT_TTL);
    let text = Pairing::default()
        .open(code.peer, &code.addrs, DEFAULT_TTL, t())
        .unwrap();
    let mangled = format!("{}\n{}", &text[..20].to_lowercase(), &text[20..]);
    assert_eq!(LinkCode::parse(&mangled).unwrap().peer, code.peer);
}

#[test]
fn the_code_holds_no_record_id_or_name() {
    let sh = patient();
    let pairing = Pairing::default();
    let text = pairing
        .open(
            sh.identity.peer(),
            &["/ip4/127.0.0.1/tcp/4001".into()],
            DEFAULT_TTL,
            t(),
        )
        .unwrap();
    let body = data_encoding::BASE32_NOPAD
        .decode(text.trim_start_matches(CODE_PREFIX).as_bytes())
        .unwrap();
    let rid = sh.identity.record_id().unwrap();
    assert!(!body.windows(32).any(|w| w == rid.0));
    assert!(!body.windows(5).any(|w| w == b"Edith"));
}
