//! Contributions: the signed body, its file form, and the patient's ledger record of each one
//! made.

use super::profile::{civil_date, parse_partial_date};
use super::{
    CONTRIBUTION_PREFIX, Consents, ExtractError, ExtractPurpose, FORMAT, MAX_FILE_BYTES, Profile,
    Pseudonym, contribution_key,
};
use crate::crypto::{self, Domain};
use crate::grant::token;
use crate::ids::PeerKey;
use crate::record::SectionView;
use crate::time::Timestamp;
use data_encoding::{BASE32_NOPAD, BASE64URL_NOPAD};
use ed25519_dalek::SigningKey;
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};

/// The signed body of a contribution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContributionBody {
    /// [`FORMAT`].
    pub format: String,
    /// A random unique id: `x` + 26 base32 characters.
    pub id: String,
    /// Who it is for: the recipient node's peer id.
    pub recipient: PeerKey,
    /// What for.
    pub purpose: ExtractPurpose,
    /// The day it was made (UTC), `YYYY-MM-DD`: a day, not a time, so the moment of sending
    /// does not help to link it to a person.
    pub created: String,
    /// The record's pseudonym for this recipient and purpose, which is also the key the body
    /// is signed with.
    pub pseudonym: Pseudonym,
    /// The facts.
    pub profile: Profile,
}

impl ContributionBody {
    fn check(&self) -> Result<(), ExtractError> {
        if self.format != FORMAT {
            return Err(ExtractError::Malformed("unknown format version"));
        }
        let id_ok = self.id.len() == 27
            && self.id.starts_with('x')
            && BASE32_NOPAD
                .decode(self.id[1..].to_ascii_uppercase().as_bytes())
                .is_ok_and(|b| b.len() == 16)
            && self.id[1..] == self.id[1..].to_ascii_lowercase();
        if !id_ok {
            return Err(ExtractError::Invalid("id"));
        }
        if parse_partial_date(&self.created).is_none() || self.created.len() != 10 {
            return Err(ExtractError::Invalid("created must be a YYYY-MM-DD date"));
        }
        self.profile.check()
    }
}

/// A verified (or freshly made) contribution: the body, its exact signed bytes and the
/// signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contribution {
    pub(super) body: ContributionBody,
    pub(super) signed: Vec<u8>,
    pub(super) signature: [u8; 64],
}

/// The file form: the readable body, the exact signed bytes (canonical DAG-CBOR, base64url)
/// and the signature (base64url).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileForm {
    format: String,
    contribution: serde_json::Value,
    signed: String,
    signature: String,
}

/// [`FileForm`] as written: the body in its own field order, for people reading the file.
#[derive(Serialize)]
struct FileOut<'a> {
    format: &'static str,
    contribution: &'a ContributionBody,
    signed: String,
    signature: String,
}

impl Contribution {
    /// Makes a contribution of the record whose root key is `root`, for `recipient` and
    /// `purpose`, from the record's sections, on the day of `now`. Refused unless `consents`
    /// has the patient opted in to `purpose`.
    pub fn create(
        root: &SigningKey,
        consents: &Consents,
        recipient: PeerKey,
        purpose: ExtractPurpose,
        sections: &[SectionView],
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<Contribution, ExtractError> {
        if !consents.allows(purpose) {
            return Err(ExtractError::NotOptedIn(purpose));
        }
        let created = civil_date(now)
            .ok_or(ExtractError::Invalid("time out of range"))?
            .to_string();
        let key = contribution_key(root, &recipient, purpose);
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        let body = ContributionBody {
            format: FORMAT.to_string(),
            id: format!("x{}", BASE32_NOPAD.encode(&id).to_ascii_lowercase()),
            recipient,
            purpose,
            created,
            pseudonym: Pseudonym(key.verifying_key().to_bytes()),
            profile: Profile::from_sections(sections, now),
        };
        body.check()?;
        let signed = serde_ipld_dagcbor::to_vec(&body)
            .map_err(|_| ExtractError::Invalid("cannot encode"))?;
        let signature = crypto::sign(&key, Domain::Contribution, &[&signed]);
        Ok(Contribution {
            body,
            signed,
            signature,
        })
    }

    /// The body.
    pub fn body(&self) -> &ContributionBody {
        &self.body
    }

    /// The file's bytes: pretty JSON with the readable body, the signed bytes and the
    /// signature.
    pub fn to_file(&self) -> Vec<u8> {
        let form = FileOut {
            format: FORMAT,
            contribution: &self.body,
            signed: BASE64URL_NOPAD.encode(&self.signed),
            signature: BASE64URL_NOPAD.encode(&self.signature),
        };
        let mut out = serde_json::to_vec_pretty(&form).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Reads and verifies a contribution file: the size, the shape, the canonical encoding of
    /// the signed body, its format rules, the signature under the body's own pseudonym key, and
    /// that the readable copy says exactly what was signed.
    pub fn from_file(bytes: &[u8]) -> Result<Contribution, ExtractError> {
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(ExtractError::TooLarge);
        }
        let form: FileForm = serde_json::from_slice(bytes)
            .map_err(|_| ExtractError::Malformed("not the JSON of a contribution"))?;
        if form.format != FORMAT {
            return Err(ExtractError::Malformed("unknown format version"));
        }
        let signed = BASE64URL_NOPAD
            .decode(form.signed.as_bytes())
            .map_err(|_| ExtractError::Malformed("the signed part is not base64url"))?;
        let signature: [u8; 64] = BASE64URL_NOPAD
            .decode(form.signature.as_bytes())
            .ok()
            .and_then(|s| s.try_into().ok())
            .ok_or(ExtractError::BadSignature)?;
        let body: ContributionBody =
            token::decode_body(&signed).map_err(|_| ExtractError::BadSignature)?;
        let key =
            crypto::verifying_key(&body.pseudonym.0).map_err(|_| ExtractError::BadSignature)?;
        crypto::verify(&key, Domain::Contribution, &[&signed], &signature)
            .map_err(|_| ExtractError::BadSignature)?;
        body.check()?;
        if serde_json::to_value(&body).ok().as_ref() != Some(&form.contribution) {
            return Err(ExtractError::Tampered);
        }
        Ok(Contribution {
            body,
            signed,
            signature,
        })
    }
}

/// What the patient's ledger keeps about a contribution: who, why, when, which id, and the
/// pseudonym used (so the patient can recognise their contribution in the recipient's hands);
/// never the content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContributionRecord {
    /// The contribution's id.
    pub id: String,
    /// The recipient's peer id.
    pub recipient: PeerKey,
    /// The recipient's name, when the patient named it with a contact card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_name: Option<String>,
    /// What for.
    pub purpose: ExtractPurpose,
    /// When it was made.
    pub at: Timestamp,
    /// The pseudonym it carries.
    pub pseudonym: Pseudonym,
}

impl ContributionRecord {
    /// The record of `c`, made at `at`.
    pub fn of(c: &Contribution, recipient_name: Option<String>, at: Timestamp) -> Self {
        ContributionRecord {
            id: c.body.id.clone(),
            recipient: c.body.recipient,
            recipient_name,
            purpose: c.body.purpose,
            at,
            pseudonym: c.body.pseudonym,
        }
    }

    /// Its ledger key: `contribution/<id>`.
    pub fn ledger_key(&self) -> String {
        format!("{CONTRIBUTION_PREFIX}{}", self.id)
    }
}
