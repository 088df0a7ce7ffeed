//! The patient's choices: the purposes, one signed opt-in or opt-out ([`ConsentChoice`]) and
//! its ledger form, and the choices in force ([`Consents`]).

use super::CONSENT_PREFIX;
use crate::crypto::{self, Domain};
use crate::ids::RecordId;
use crate::time::Timestamp;
use data_encoding::HEXLOWER;
use ed25519_dalek::SigningKey;
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// The secondary uses a patient may opt in to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExtractPurpose {
    /// Research.
    Research,
    /// Planning and commissioning of services.
    Planning,
}

impl ExtractPurpose {
    /// Both purposes.
    pub const ALL: [ExtractPurpose; 2] = [ExtractPurpose::Research, ExtractPurpose::Planning];

    /// The text form (`research`, `planning`).
    pub fn as_str(self) -> &'static str {
        match self {
            ExtractPurpose::Research => "research",
            ExtractPurpose::Planning => "planning",
        }
    }

    /// Plain words for people.
    pub fn words(self) -> &'static str {
        match self {
            ExtractPurpose::Research => "research",
            ExtractPurpose::Planning => "planning services",
        }
    }
}

impl fmt::Display for ExtractPurpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ExtractPurpose {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "research" => Ok(ExtractPurpose::Research),
            "planning" => Ok(ExtractPurpose::Planning),
            _ => Err("the purpose must be research or planning"),
        }
    }
}

fn sig_hex<S: serde::Serializer>(sig: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&HEXLOWER.encode(sig))
}

fn sig_from_hex<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
    let text = String::deserialize(d)?;
    HEXLOWER
        .decode(text.as_bytes())
        .ok()
        .and_then(|v| <[u8; 64]>::try_from(v).ok())
        .ok_or_else(|| serde::de::Error::custom("expected a 64-byte signature in hex"))
}

/// One opt-in or opt-out, signed by the record root key (domain `consent-event/v1`) so that it
/// proves itself wherever the ledger goes. The newest choice for a purpose is in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentChoice {
    /// Which use.
    pub purpose: ExtractPurpose,
    /// `true`: opted in; `false`: opted out.
    pub opted_in: bool,
    /// When the patient chose.
    pub at: Timestamp,
    /// The record root's signature over the record id, purpose, choice and time.
    #[serde(serialize_with = "sig_hex", deserialize_with = "sig_from_hex")]
    pub signature: [u8; 64],
}

fn choice_parts(
    record: &RecordId,
    purpose: ExtractPurpose,
    opted_in: bool,
    at: Timestamp,
) -> ([u8; 32], [u8; 1], [u8; 8], &'static str) {
    (
        record.0,
        [u8::from(opted_in)],
        at.as_millis().to_be_bytes(),
        purpose.as_str(),
    )
}

impl ConsentChoice {
    /// The patient's choice, signed with the record root key.
    pub fn sign(
        root: &SigningKey,
        record: &RecordId,
        purpose: ExtractPurpose,
        opted_in: bool,
        at: Timestamp,
    ) -> ConsentChoice {
        let (r, c, t, p) = choice_parts(record, purpose, opted_in, at);
        let signature = crypto::sign(root, Domain::ConsentEvent, &[&r, p.as_bytes(), &c, &t]);
        ConsentChoice {
            purpose,
            opted_in,
            at,
            signature,
        }
    }

    /// Whether the record's root key signed this choice.
    pub fn verify(&self, record: &RecordId) -> bool {
        let Ok(key) = crypto::verifying_key(&record.0) else {
            return false;
        };
        let (r, c, t, p) = choice_parts(record, self.purpose, self.opted_in, self.at);
        crypto::verify(
            &key,
            Domain::ConsentEvent,
            &[&r, p.as_bytes(), &c, &t],
            &self.signature,
        )
        .is_ok()
    }

    /// The ledger key to store it under: `consent/<purpose>/<time>-<random>` (items are written
    /// once, so every choice gets its own key).
    pub fn ledger_key(&self, rng: &mut impl CryptoRng) -> String {
        let mut r = [0u8; 4];
        rng.fill_bytes(&mut r);
        format!(
            "{CONSENT_PREFIX}{}/{:015}-{}",
            self.purpose,
            self.at.as_millis().max(0),
            HEXLOWER.encode(&r)
        )
    }
}

/// The choices in force: for each purpose the newest verified choice, if any. No choice means
/// opted out (the default).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Consents {
    current: BTreeMap<ExtractPurpose, ConsentChoice>,
}

impl Consents {
    /// The choices in force among `choices`, ignoring any the record root did not sign. Of two
    /// choices at the same time, opting out wins.
    pub fn from_choices(
        record: &RecordId,
        choices: impl IntoIterator<Item = ConsentChoice>,
    ) -> Consents {
        let mut current: BTreeMap<ExtractPurpose, ConsentChoice> = BTreeMap::new();
        for c in choices {
            if !c.verify(record) {
                continue;
            }
            let newer = match current.get(&c.purpose) {
                None => true,
                Some(old) => (c.at, !c.opted_in) > (old.at, !old.opted_in),
            };
            if newer {
                current.insert(c.purpose, c);
            }
        }
        Consents { current }
    }

    /// The choices in force among the ledger's `consent/…` items (key, JSON text); other or
    /// unreadable items are ignored.
    pub fn from_ledger(record: &RecordId, items: &[(String, String)]) -> Consents {
        Consents::from_choices(
            record,
            items
                .iter()
                .filter(|(k, _)| k.starts_with(CONSENT_PREFIX))
                .filter_map(|(_, v)| serde_json::from_str::<ConsentChoice>(v).ok()),
        )
    }

    /// The choice in force for `purpose`, if the patient ever chose.
    pub fn current(&self, purpose: ExtractPurpose) -> Option<&ConsentChoice> {
        self.current.get(&purpose)
    }

    /// Whether the patient is opted in to `purpose` now.
    pub fn allows(&self, purpose: ExtractPurpose) -> bool {
        self.current(purpose).is_some_and(|c| c.opted_in)
    }
}
