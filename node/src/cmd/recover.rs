//! `hearth recover`: a new device for a lost one, from the 24-word recovery phrase and a relay
//! that kept the record.
//!
//! The phrase re-derives the record root and the recovery key. The new device issues the relay
//! a fresh `relay` grant and a list naming itself the patient's device (both signed by the
//! root, so the relay accepts them), fetches every bundle and the key wraps to the recovery
//! key, and rebuilds the record ([`hearth_core::record::Vault::restore_record`]): every
//! section, the private ledger, the devices. It is then the device holding the root.

use crate::app::grants::{own_record, record_grant};
use crate::app::{Ctx, ensure_new_home, invalid, new_node_name_and_passphrase, now, os_rng};
use crate::fail::{Failure, code};
use crate::home::{self, NodeInfo};
use clap::Args;
use hearth_core::grant::{self, Ability, Grant, GrantSpec};
use hearth_core::keys::{Identity, KdfParams, Keystore, RecoveryPhrase, Role};
use hearth_core::ledger::{IssuedGrant, RelayItem};
use hearth_core::record::AuthItem;
use hearth_sync::relay::access::recovery_list;
use serde_json::json;
use std::time::Duration;
use zeroize::Zeroizing;

/// `hearth recover`.
#[derive(Args, Debug)]
pub struct RecoverArgs {
    /// A relay that keeps the record (its address, ending in /p2p/PEER).
    #[arg(long)]
    pub relay: String,
    /// This device's name.
    #[arg(long)]
    pub name: Option<String>,
    /// Read the 24 words from this file (first line) instead of $HEARTH_RECOVERY_PHRASE or
    /// standard input.
    #[arg(long, value_name = "FILE")]
    pub phrase_file: Option<std::path::PathBuf>,
}

fn read_phrase(args: &RecoverArgs) -> Result<RecoveryPhrase, Failure> {
    let text: Zeroizing<String> = match (&args.phrase_file, std::env::var("HEARTH_RECOVERY_PHRASE"))
    {
        (Some(f), _) => Zeroizing::new(
            std::fs::read_to_string(f)
                .map_err(|e| Failure::new(code::IO, format!("{}: {e}", f.display())))?
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
        ),
        (None, Ok(v)) => Zeroizing::new(v),
        (None, Err(_)) => {
            eprintln!("Type the 24 words of your recovery phrase, then Enter:");
            let mut line = Zeroizing::new(String::new());
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| Failure::new(code::IO, e.to_string()))?;
            line
        }
    };
    RecoveryPhrase::parse(text.trim()).map_err(|e| invalid(e.to_string()))
}

/// Runs `hearth recover`.
pub fn recover(ctx: &Ctx, args: RecoverArgs) -> Result<(), Failure> {
    ensure_new_home(ctx)?;
    let (addr, relay) = crate::cmd::relay::relay_peer(&args.relay)?;
    let phrase = read_phrase(&args)?;
    let (name, pass) = new_node_name_and_passphrase(ctx, args.name.as_deref(), "patient")?;
    let mut rng = os_rng();
    let identity = Identity::recover(name.clone(), &phrase, &mut rng);
    let record = identity
        .record_id()
        .ok_or_else(|| Failure::new(code::IO, "internal: a recovered identity has a record"))?;
    let t = now();
    let expires = crate::app::parse::parse_expires("1y", t)?;
    let spec = GrantSpec::new(
        relay,
        crate::cmd::relay::whole_record()?,
        Ability::Relay,
        t,
        expires,
    );
    let g =
        Grant::issue_root(&identity, spec, &[], &mut rng).map_err(|e| invalid(e.to_string()))?;
    let list = recovery_list(&identity, &relay, &g, t)
        .ok_or_else(|| Failure::new(code::IO, "internal: cannot sign the relay list"))?;
    let fetched = crate::recover::fetch(
        &identity,
        record,
        relay,
        addr.clone(),
        list.to_bytes(),
        Duration::from_secs(60),
    )
    .map_err(|f| {
        if f.code == code::REFUSED {
            Failure::new(
                code::NOT_FOUND,
                "the relay holds no record for this recovery phrase: check the 24 words, or try another relay that kept your record",
            )
        } else {
            f
        }
    })?;
    let keystore = Keystore::seal(&identity, pass.as_bytes(), KdfParams::DEFAULT, &mut rng)
        .map_err(Failure::from_key_error)?;
    let store_existed = ctx.home.store_dir().exists();
    ctx.home.create_dir()?;
    let res = restore(
        ctx,
        &identity,
        &phrase,
        fetched,
        (relay, &addr, &g),
        &keystore,
        t,
    );
    if res.is_err() && !store_existed {
        // Nothing half-made is left behind: the store this command created goes with it.
        let _ = std::fs::remove_dir_all(ctx.home.store_dir());
    }
    let (report, info) = res?;
    let unrecoverable: Vec<String> = report
        .unrecoverable
        .iter()
        .map(ToString::to_string)
        .collect();
    ctx.print(
        json!({
            "peer_id": info.peer_id,
            "record_id": record,
            "sections": report.sections,
            "bundles": report.bundles_stored,
            "keys_recovered": report.keys_recovered,
            "unrecoverable_sections": unrecoverable,
            "held_for_review": report.held,
            "refused": report.refused.len(),
        }),
        || {
            let mut s = format!(
                "Recovered your record {record} from the relay onto this device ({}).\n  {} sections, {} bundles, {} keys recovered with your phrase.",
                info.peer_id, report.sections, report.bundles_stored, report.keys_recovered
            );
            if !unrecoverable.is_empty() {
                s.push_str(&format!(
                    "\n  {} sections could not be opened with the phrase (no recovery key for them at the relay).",
                    unrecoverable.len()
                ));
            }
            if report.held > 0 {
                s.push_str(&format!(
                    "\n  {} writes by professionals await your review (`hearth review`).",
                    report.held
                ));
            }
            if !report.refused.is_empty() {
                s.push_str(&format!(
                    "\n  {} bundles were refused (damaged or not signed by an allowed author).",
                    report.refused.len()
                ));
            }
            s.push_str("\nThis device now holds your record root. Remove the lost device with `hearth device remove`.");
            s
        },
    );
    Ok(())
}

/// Rebuilds the record in this home's new store and records the relay grant (so the relay
/// keeps being supplied from this device), then writes the node's files.
fn restore(
    ctx: &Ctx,
    identity: &Identity,
    phrase: &RecoveryPhrase,
    fetched: crate::recover::Fetched,
    (relay, addr, g): (hearth_core::ids::PeerKey, &libp2p::Multiaddr, &Grant),
    keystore: &Keystore,
    t: hearth_core::time::Timestamp,
) -> Result<(hearth_core::record::RestoreReport, NodeInfo), Failure> {
    let mut rng = os_rng();
    let vault = ctx.vault()?;
    let report = vault.restore_record(
        identity,
        phrase,
        &fetched.wraps,
        fetched.bundles,
        t,
        &mut rng,
    )?;
    {
        let mut rec = own_record(&vault, identity)?;
        let known_relay = rec.relays(t).iter().any(|(p, _)| *p == relay);
        let item = IssuedGrant {
            token: grant::chain_to_token(std::slice::from_ref(g)),
            issued_at: t,
            audience: relay,
            audience_name: None,
            request: None,
            keys_included: false,
        };
        record_grant(&mut rec, g, &item, None, t, &mut rng)?;
        if !known_relay {
            let relay_item = RelayItem {
                addrs: vec![addr.to_string()],
                name: None,
                added_at: t,
            };
            rec.put_auth(vec![AuthItem::Relay(relay, relay_item)], t, &mut rng)?;
        }
    }
    let mut known = vault.peer_addrs(&relay)?;
    known.put_first(addr.to_string());
    vault.set_peer_addrs(&relay, &known)?;
    let info = NodeInfo {
        format: home::node_format(),
        role: Role::Patient,
        peer_id: identity.peer(),
        record_id: identity.record_id(),
        org_code: None,
    };
    ctx.home.write_new(&info, keystore)?;
    Ok((report, info))
}
