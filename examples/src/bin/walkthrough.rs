//! A narrated walk through a patient's record on the real sled store: create keys and a
//! record, add entries of several kinds, correct one, mark one entered in error, read the
//! history, show that nothing lies on disk in clear, and show tampering being caught.
//!
//! Run: `cargo run --release --locked -p hearth-examples --bin walkthrough`

use anyhow::{Context, Result};
use hearth_core::keys::{Identity, KdfParams, Keystore, Role};
use hearth_core::record::{NewRecord, Vault};
use hearth_core::section::SectionName;
use hearth_core::store::{Batch, Store};
use hearth_core::time::Timestamp;
use hearth_node::sled_store::SledStore;
use serde_json::json;
use std::path::Path;

fn now() -> Timestamp {
    Timestamp::from_millis(jiff::Timestamp::now().as_millisecond())
}

fn step(n: u32, text: &str) {
    println!("\n[{n}] {text}");
}

fn contains(dir: &Path, needle: &[u8]) -> Result<bool> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            if contains(&p, needle)? {
                return Ok(true);
            }
        } else if std::fs::read(&p)?
            .windows(needle.len())
            .any(|w| w == needle)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

fn main() -> Result<()> {
    let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
    let home = tempfile::tempdir()?;
    println!(
        "Hearth walkthrough: one patient's record on this machine, in {}",
        home.path().display()
    );

    step(
        1,
        "Edith creates her keys. The secrets are sealed under her passphrase (Argon2id).",
    );
    let (edith, phrase) = Identity::generate(Role::Patient, "Edith Jones".into(), &mut rng);
    let phrase = phrase.context("a patient gets a recovery phrase")?;
    let ks = Keystore::seal(&edith, b"a long passphrase", KdfParams::DEFAULT, &mut rng)?;
    std::fs::write(home.path().join("keystore.cbor"), ks.to_bytes())?;
    println!("    peer id   {}", edith.peer());
    println!("    record id {}", edith.record_id().context("patient")?);
    println!(
        "    recovery phrase: {} words, shown once at `hearth init`",
        phrase.words().split(' ').count()
    );
    let wrong =
        Keystore::from_bytes(&std::fs::read(home.path().join("keystore.cbor"))?)?.open(b"guess");
    println!(
        "    opening the keystore with a wrong passphrase: {}",
        wrong.err().map(|e| e.to_string()).unwrap_or_default()
    );

    step(
        2,
        "Her record is created in the sled store, with her demographics.",
    );
    let store = SledStore::open(&home.path().join("store"))?;
    let vault = Vault::open(store)?;
    let canary = format!(
        "walkthrough-canary-{}",
        edith.peer().to_string().get(8..20).unwrap_or("x")
    );
    let rid = vault.create_record(
        &edith,
        NewRecord { demographics: Some(json!({"name": "Edith Jones", "nhs_number": "9434765919", "birth_date": "1941-03-09"})) },
        now(),
        &mut rng,
    )?;
    let mut rec = vault.open_record(&edith, &rid)?;

    step(
        3,
        "She adds entries; each is a signed bundle encrypted under its section's key.",
    );
    let allergy = rec.add_entry(
        &"allergies".parse()?,
        &json!({"substance": "Penicillin", "severity": "severe", "reaction": "rash"}),
        now(),
        &mut rng,
    )?;
    rec.add_entry(&"medications".parse()?, &json!({"name": "Donepezil 5mg tablets", "dose": "5 mg", "frequency": "once daily at night", "status": "active"}), now(), &mut rng)?;
    rec.add_entry(
        &"carers".parse()?,
        &json!({"name": "Mary Jones", "relationship": "daughter", "main_carer": true}),
        now(),
        &mut rng,
    )?;
    let note = rec.add_entry(
        &"notes:mental-health".parse()?,
        &json!({"text": format!("Memory clinic follow-up {canary}")}),
        now(),
        &mut rng,
    )?;
    for s in rec.sections() {
        println!("    {:<28} section id {}", s.name.to_string(), s.ids[0]);
    }

    step(
        4,
        "The allergy severity was wrong: a correction is a new version, the old one kept.",
    );
    let v2 = rec.correct(
        &allergy,
        &json!({"substance": "Penicillin", "severity": "moderate", "reaction": "rash"}),
        now(),
        &mut rng,
    )?;
    let allergies: SectionName = "allergies".parse()?;
    for v in rec.history(&allergies)? {
        println!(
            "    v{} {} by {} at {}: severity {}",
            v.version, v.id, v.provenance.author_name, v.provenance.recorded_at, v.body["severity"]
        );
    }
    println!("    current: {}", rec.show(&allergies)?.entries[0].id == v2);

    step(
        5,
        "A note was written in the wrong record: marked entered in error, not deleted.",
    );
    rec.mark_error(&note, "wrong patient", now(), &mut rng)?;
    let notes = rec.show(&"notes:mental-health".parse()?)?;
    println!(
        "    status {:?}, reason {:?}",
        notes.entries[0].status, notes.entries[0].status_reason
    );
    drop(rec);
    drop(vault);

    step(6, "Nothing readable lies on disk.");
    for needle in [
        canary.as_str(),
        "Edith Jones",
        "9434765919",
        "Penicillin",
        "mental-health",
    ] {
        println!(
            "    {:<40} found on disk: {}",
            needle,
            contains(home.path(), needle.as_bytes())?
        );
    }

    step(
        7,
        "Someone flips one byte of a stored bundle: caught, and only that section is affected.",
    );
    let store = SledStore::open(&home.path().join("store"))?;
    let mut prefix = vec![b'B'];
    prefix.extend_from_slice(&rid.0);
    let vault = Vault::open(store)?;
    let sid = vault
        .open_record(&edith, &rid)?
        .sections()
        .into_iter()
        .find(|s| s.name == allergies)
        .context("allergies")?
        .ids[0];
    prefix.extend_from_slice(&sid.0);
    let (k, mut v) = vault
        .store()
        .scan_prefix(&prefix)?
        .pop()
        .context("a bundle")?;
    let mid = v.len() / 2;
    v[mid] ^= 1;
    let mut b = Batch::new();
    b.put(k, v);
    vault.store().commit(b)?;
    let mut rec = vault.open_record(&edith, &rid)?;
    println!(
        "    allergies:   {}",
        rec.show(&allergies)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "readable?!".into())
    );
    println!(
        "    medications: {} entry readable",
        rec.show(&"medications".parse()?)?.entries.len()
    );

    println!("\nDone. Next: grants, sync between nodes and relays (see the README).");
    Ok(())
}
