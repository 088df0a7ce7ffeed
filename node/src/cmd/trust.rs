//! Who vouches for professionals: `hearth trust` (a patient trusts organisations to attest)
//! and `hearth credential` (a professional keeps what their organisation attested); the
//! organisation's side, `hearth org attest`, is in [`super::org`].

use crate::app::grants::own_record;
use crate::app::parse::parse_peer;
use crate::app::token::token_refused;
use crate::app::{Ctx, now, os_rng, refused};
use crate::fail::Failure;
use clap::Subcommand;
use hearth_core::grant::request::Credential;
use hearth_core::ledger::TrustItem;
use hearth_core::record::LedgerItem;
use serde_json::json;

/// `hearth trust …`.
#[derive(Subcommand, Debug)]
pub enum TrustCommand {
    /// Trust an organisation to attest professionals.
    AddOrg {
        /// The organisation's peer id.
        org_id: String,
        /// A name to show for it.
        #[arg(long)]
        name: Option<String>,
    },
    /// The organisations you trust.
    List,
}

/// `hearth credential …`.
#[derive(Subcommand, Debug)]
pub enum CredentialCommand {
    /// Store a credential your organisation gave you; requests then carry it.
    Add {
        /// The credential's text form (HEARTH1C…).
        token: String,
    },
    /// The credentials held.
    List,
}

/// `hearth trust …` (patient).
pub fn trust(ctx: &Ctx, cmd: TrustCommand) -> Result<(), Failure> {
    let (_, identity) = ctx.unlock()?;
    let vault = ctx.vault()?;
    let mut rec = own_record(&vault, &identity)?;
    match cmd {
        TrustCommand::AddOrg { org_id, name } => {
            let org = parse_peer(&org_id)?;
            if rec.trusts(&org) {
                return Err(refused("you already trust that organisation"));
            }
            let t = now();
            let item = TrustItem {
                name: name.clone(),
                added_at: t,
            };
            rec.put_ledger(&[LedgerItem::Trust(&org, &item)], t, &mut os_rng())?;
            ctx.print(json!({"org": org, "name": name}), || {
                format!("You now trust {org} to attest professionals.")
            });
        }
        TrustCommand::List => {
            let items = rec.trust_items();
            ctx.print(
                json!({"trusted": items.iter().map(|(o, i)| json!({"org": o, "name": i.as_ref().and_then(|i| i.name.clone()), "added_at": i.as_ref().map(|i| i.added_at)})).collect::<Vec<_>>()}),
                || if items.is_empty() { "You trust no organisation yet (hearth trust add-org ORG_ID).".into() } else {
                    items.iter().map(|(o, i)| format!("{o}  {}", i.as_ref().and_then(|i| i.name.clone()).unwrap_or_default())).collect::<Vec<_>>().join("\n") },
            );
        }
    }
    Ok(())
}

/// `hearth credential …` (professional).
pub fn credential(ctx: &Ctx, cmd: CredentialCommand) -> Result<(), Failure> {
    let (_, identity) = ctx.unlock()?;
    let vault = ctx.vault()?;
    match cmd {
        CredentialCommand::Add { token } => {
            let cred =
                Credential::from_token(&token).map_err(|e| token_refused("credential", e))?;
            if cred.body().subject != identity.peer() {
                return Err(refused("this credential names another professional"));
            }
            if cred.body().expires <= now() {
                return Err(refused("this credential has expired"));
            }
            if !vault.keep_credential(&cred.hash(), &cred.to_token())? {
                return Err(refused("this credential is already stored"));
            }
            ctx.print(json!({"id": cred.short_id('c'), "org": cred.body().org, "expires": cred.body().expires}), || {
                format!("Stored: {} ({}) attested by {} until {}.", cred.body().name, cred.body().role, cred.body().org_name, cred.body().expires)
            });
        }
        CredentialCommand::List => {
            let creds: Vec<Credential> = vault
                .credential_tokens()?
                .iter()
                .filter_map(|t| Credential::from_token(t).ok())
                .collect();
            ctx.print(
                json!({"credentials": creds.iter().map(|c| json!({"id": c.short_id('c'), "org": c.body().org, "org_name": c.body().org_name, "name": c.body().name, "role": c.body().role, "registration": c.body().registration, "expires": c.body().expires})).collect::<Vec<_>>()}),
                || if creds.is_empty() { "No credentials.".into() } else {
                    creds.iter().map(|c| format!("{} {} ({}) by {} until {}", c.short_id('c'), c.body().name, c.body().role, c.body().org_name, c.body().expires)).collect::<Vec<_>>().join("\n") },
            );
        }
    }
    Ok(())
}
