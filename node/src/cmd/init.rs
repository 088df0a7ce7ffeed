//! `hearth init` (a new node, with its keys and, for a patient, the record) and `hearth id`
//! (this node's identity, or its contact card).

use crate::app::{Ctx, ensure_new_home, invalid, new_node_name_and_passphrase, now, os_rng};
use crate::fail::{Failure, code};
use crate::home::{self, NodeInfo};
use clap::{Args, ValueEnum};
use hearth_core::grant::request;
use hearth_core::keys::{Identity, KdfParams, Keystore, Role};
use hearth_core::nhs::NhsNumber;
use hearth_core::record::NewRecord;
use serde_json::{Value, json};

/// The role of a new node.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RoleArg {
    /// A patient (or proxy) holding their own record.
    Patient,
    /// A professional who is granted access to patients' records.
    Professional,
    /// An organisation's relay node.
    Relay,
}

/// `hearth init`.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// The node's role.
    #[arg(long, value_enum, required_unless_present = "join")]
    pub role: Option<RoleArg>,
    /// Join a patient's record as another of their devices, with the one-time code that
    /// `hearth device link` printed on the device holding the record (HEARTH1L…).
    #[arg(long, value_name = "CODE", conflicts_with_all = ["role", "nhs_number"])]
    pub join: Option<String>,
    /// Display name (the patient's name, the professional's name, or the organisation's).
    #[arg(long)]
    pub name: Option<String>,
    /// The patient's NHS number (10 digits; checked with Modulus 11).
    #[arg(long, value_name = "N")]
    pub nhs_number: Option<String>,
    /// The organisation's code, e.g. its ODS code (`--role relay` only): credentials it issues
    /// carry it.
    #[arg(long, value_name = "CODE")]
    pub org_code: Option<String>,
}

/// `hearth init --role`: a new node (and, for a patient, the record). (`init --join` is
/// `hearth device`'s.)
pub fn init(ctx: &Ctx, args: InitArgs) -> Result<(), Failure> {
    ensure_new_home(ctx)?;
    let role = match args.role {
        Some(RoleArg::Patient) => Role::Patient,
        Some(RoleArg::Professional) => Role::Professional,
        Some(RoleArg::Relay) => Role::Relay,
        None => return Err(Failure::new(code::INVALID, "init needs --role or --join")),
    };
    // Validate everything before writing anything.
    let org_code = match args.org_code.as_deref().map(str::trim) {
        Some(_) if role != Role::Relay => {
            return Err(invalid(
                "--org-code is only for an organisation's node (--role relay)",
            ));
        }
        Some(c)
            if c.is_empty()
                || c.len() > 16
                || !c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-') =>
        {
            return Err(invalid(
                "--org-code must be 1 to 16 letters, digits or hyphens (e.g. an ODS code)",
            ));
        }
        Some(c) => Some(c.to_ascii_uppercase()),
        None => None,
    };
    let nhs = match &args.nhs_number {
        Some(n) if role != Role::Patient => {
            let _ = n;
            return Err(Failure::new(
                code::INVALID,
                "--nhs-number is only for a patient node",
            ));
        }
        Some(n) => Some(
            n.parse::<NhsNumber>()
                .map_err(|e| Failure::new(code::INVALID, format!("--nhs-number refused: {e}")))?,
        ),
        None => None,
    };
    let (name, pass) = new_node_name_and_passphrase(ctx, args.name.as_deref(), role.as_str())?;
    let mut rng = os_rng();
    let (identity, phrase) = Identity::generate(role, name.clone(), &mut rng);
    let keystore = Keystore::seal(&identity, pass.as_bytes(), KdfParams::DEFAULT, &mut rng)
        .map_err(Failure::from_key_error)?;
    ctx.home.create_dir()?;
    let t = now();
    let record_id = if role == Role::Patient {
        let vault = ctx.vault()?;
        let mut demo = serde_json::Map::new();
        demo.insert("name".into(), json!(name));
        if let Some(n) = &nhs {
            demo.insert("nhs_number".into(), json!(n.as_str()));
        }
        let new = NewRecord {
            demographics: Some(Value::Object(demo)),
        };
        Some(vault.create_record(&identity, new, t, &mut rng)?)
    } else {
        let _ = ctx.vault()?;
        None
    };
    let info = NodeInfo {
        format: home::node_format(),
        role,
        peer_id: identity.peer(),
        record_id,
        org_code: org_code.clone(),
    };
    ctx.home.write_new(&info, &keystore)?;
    let words = phrase.as_ref().map(|p| p.words());
    ctx.print(
        json!({
            "peer_id": info.peer_id,
            "role": role,
            "name": name,
            "record_id": record_id,
            "org_code": org_code,
            "recovery_phrase": words.as_ref().map(|w| w.as_str()),
        }),
        || {
            let mut s = format!(
                "Initialised a {} node in {}\n  peer id:   {}",
                role.as_str(),
                ctx.home.dir().display(),
                info.peer_id
            );
            if let Some(r) = record_id {
                s.push_str(&format!("\n  record id: {r}"));
            }
            if let Some(w) = &words {
                s.push_str(&format!(
                    "\n\nRecovery phrase (write it down now; it is shown only this once and \
                     restores your record if this device is lost):\n\n  {}\n",
                    w.as_str()
                ));
            }
            s
        },
    );
    Ok(())
}

/// `hearth id`: this node's identity.
pub fn id(ctx: &Ctx) -> Result<(), Failure> {
    let (info, identity) = ctx.unlock()?;
    ctx.print(
        json!({
            "peer_id": info.peer_id,
            "role": info.role,
            "name": identity.name,
            "record_id": info.record_id,
            "agreement_key": data_encoding::HEXLOWER.encode(&identity.agreement_public()),
        }),
        || {
            let mut s = format!(
                "{} ({})\n  peer id:   {}",
                identity.name,
                info.role.as_str(),
                info.peer_id
            );
            if let Some(r) = info.record_id {
                s.push_str(&format!("\n  record id: {r}"));
            }
            s
        },
    );
    Ok(())
}

/// `hearth id --card`.
pub fn card(ctx: &Ctx) -> Result<(), Failure> {
    let (_, identity) = ctx.unlock()?;
    let card = request::card(&identity).map_err(|e| invalid(e.to_string()))?;
    let token = card.to_token();
    ctx.print(json!({"peer_id": identity.peer(), "card": token}), || {
        token.clone()
    });
    Ok(())
}
