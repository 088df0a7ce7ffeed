//! De-identified extracts for research and planning (issue #5, DESIGN §10).
//!
//! A patient opts in or out of two secondary uses of their record, **research** and
//! **planning** (commissioning), each off until they say otherwise. An opted-in patient's node
//! makes, for one named recipient (a commissioner's node, named by its peer id) and one purpose,
//! a signed, de-identified **contribution**: a handful of aggregate-friendly facts and nothing
//! that names the patient. The recipient pools many contributions into counts with
//! small-number suppression. Nothing leaves the patient's node unless the patient runs the
//! command; the network delivery comes with the relays.
//!
//! What a contribution holds ([`Profile`]): a 5-year age band (`90+` at the top), administrative
//! gender, the postcode district (the outward code, e.g. `LS1`), and the codes (SNOMED CT,
//! ICD-10, dm+d; never free text) of current conditions and medicines, from `general`-label
//! sections only. Never a name, NHS number, address, full postcode, contact detail, exact date
//! of birth, free text, or anything from a `mental-health`, `sexual-health`, `safeguarding` or
//! `social-care` section.
//!
//! **Pseudonym and signature are one key.** For each (recipient, purpose) the node derives an
//! ed25519 key with HKDF-SHA256 from the record root key ([`contribution_key`]). Its public half
//! is the contribution's [`Pseudonym`], and the contribution is signed with its private half.
//! So the recipient can check that a file was not altered and that two files come from the same
//! record (same pseudonym: a duplicate) without learning which record: the record root key, the
//! record id and the device key never appear, and without the root key nobody can link the
//! pseudonyms one record shows to different recipients or purposes. Nobody but the record's
//! holder can produce a valid contribution under an existing pseudonym. The same recovery
//! phrase gives the same pseudonyms, so a restored record is still recognised as one.
//!
//! The patient's choices are [`ConsentChoice`]s, signed by the record root key, kept in the
//! patient's private consent ledger (`consent/…` items) next to a [`ContributionRecord`]
//! (`contribution/…`) for every contribution made: who, why, when, which id, never the content.
//!
//! ```
//! use hearth_core::extract::{Aggregator, Consents, ConsentChoice, Contribution, Dimension,
//!     ExtractPurpose, Suppression};
//! use hearth_core::ids::PeerKey;
//! use hearth_core::keys::{Identity, Role};
//! use hearth_core::test_utils::{TestRng, TEST_NOW};
//!
//! let mut rng = TestRng::new(1);
//! let (patient, _) = Identity::generate(Role::Patient, "Edith".into(), &mut rng);
//! let root = patient.root_key().unwrap();
//! let record = patient.record_id().unwrap();
//! let icb = PeerKey([9; 32]);
//!
//! // Off by default: no contribution.
//! let none = Consents::default();
//! assert!(Contribution::create(root, &none, icb, ExtractPurpose::Planning, &[], TEST_NOW, &mut rng).is_err());
//!
//! // Opted in: a signed contribution the recipient can verify and count.
//! let on = ConsentChoice::sign(root, &record, ExtractPurpose::Planning, true, TEST_NOW);
//! let consents = Consents::from_choices(&record, [on]);
//! let c = Contribution::create(root, &consents, icb, ExtractPurpose::Planning, &[], TEST_NOW, &mut rng).unwrap();
//! let file = c.to_file();
//! let back = Contribution::from_file(&file).unwrap();
//! let mut agg = Aggregator::new(icb, Some(ExtractPurpose::Planning));
//! agg.add(back).unwrap();
//! let table = agg.finish(&[Dimension::Gender], Suppression::default());
//! assert_eq!(table.rows[0].values, vec!["unknown".to_string()]);
//! ```

use crate::crypto::{self, Domain};
use crate::entry::EntryStatus;
use crate::entry::schema::{
    self, ConditionClinicalStatus, ConditionVerificationStatus, EntryBody, MedicationStatus,
};
use crate::grant::token;
use crate::ids::{PeerKey, RecordId};
use crate::record::SectionView;
use crate::section::{Label, SectionClass};
use crate::time::Timestamp;
use data_encoding::{BASE32_NOPAD, BASE64URL_NOPAD, HEXLOWER};
use ed25519_dalek::SigningKey;
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;
use zeroize::Zeroizing;

/// The format tag of a contribution file (outside and inside the signed body).
pub const FORMAT: &str = "hearth-contribution/1";
/// The largest contribution file accepted, in bytes (a real one is about 1 KiB).
pub const MAX_FILE_BYTES: u64 = 256 * 1024;
/// The most condition or medication codes one contribution may carry.
pub const MAX_CODES: usize = 500;
/// Ledger items holding the patient's choices start with this.
pub const CONSENT_PREFIX: &str = "consent/";
/// Ledger items recording contributions start with this.
pub const CONTRIBUTION_PREFIX: &str = "contribution/";
/// Width of an age band, in years.
pub const AGE_BAND_YEARS: i32 = 5;
/// Ages from this one up share the top band (`90+`).
pub const TOP_AGE: i32 = 90;

/// Why an extract operation was refused. No variant carries record content, a key or a
/// pseudonym.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// The patient has not opted in to this purpose (or opted out again): nothing is made.
    #[error("not opted in to {0} use of the record (hearth consent {0} on)")]
    NotOptedIn(ExtractPurpose),
    /// The file is not a contribution: not JSON, wrong shape, wrong format tag (the sender's or
    /// a copy's fault).
    #[error("not a contribution file: {0}")]
    Malformed(&'static str),
    /// Larger than [`MAX_FILE_BYTES`].
    #[error("the file is larger than a contribution can be ({} KiB)", MAX_FILE_BYTES / 1024)]
    TooLarge,
    /// The signature does not verify: the signed part was altered, or signed by another key.
    #[error("bad signature (altered, or not signed by its pseudonym's key)")]
    BadSignature,
    /// The readable copy differs from the signed body: the file was edited after signing.
    #[error("the readable part differs from the signed part (the file was edited)")]
    Tampered,
    /// A format rule of the body is broken.
    #[error("invalid contribution: {0}")]
    Invalid(&'static str),
    /// Made for another recipient.
    #[error("made for another recipient ({0})")]
    WrongRecipient(PeerKey),
    /// Made for another purpose than the one being aggregated.
    #[error("made for {found} uses, not {expected}", found = .found.words(), expected = .expected.words())]
    WrongPurpose {
        /// The purpose being aggregated.
        expected: ExtractPurpose,
        /// The contribution's purpose.
        found: ExtractPurpose,
    },
    /// The same contribution (same id) was given twice.
    #[error("the same contribution was already given (item {earlier})")]
    DuplicateContribution {
        /// The position (from 0) of the earlier copy among those added.
        earlier: usize,
    },
    /// A second contribution from the same record for this recipient and purpose.
    #[error("a second contribution from the same record (same pseudonym as item {earlier})")]
    DuplicatePseudonym {
        /// The position (from 0) of the earlier one among those added.
        earlier: usize,
    },
    /// The key given is not a record root key.
    #[error("only the record's owner can contribute it")]
    NotOwner,
}

// ---------------------------------------------------------------------------------------------
// Purposes and the patient's choices

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

// ---------------------------------------------------------------------------------------------
// Pseudonyms

/// A record's pseudonym for one recipient and purpose: the public half of
/// [`contribution_key`]. Text form `p` + 52 lower-case base32 characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pseudonym(pub [u8; 32]);

impl fmt::Display for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", BASE32_NOPAD.encode(&self.0).to_ascii_lowercase())
    }
}

impl FromStr for Pseudonym {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s.strip_prefix('p').ok_or("a pseudonym starts with 'p'")?;
        let bytes = BASE32_NOPAD
            .decode(rest.to_ascii_uppercase().as_bytes())
            .map_err(|_| "a pseudonym is base32")?;
        <[u8; 32]>::try_from(bytes)
            .map(Pseudonym)
            .map_err(|_| "a pseudonym has 32 bytes")
    }
}

impl Serialize for Pseudonym {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            serde_bytes::Bytes::new(&self.0).serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Pseudonym {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            let b = serde_bytes::ByteBuf::deserialize(d)?;
            <[u8; 32]>::try_from(b.into_vec())
                .map(Pseudonym)
                .map_err(|_| serde::de::Error::custom("a pseudonym has 32 bytes"))
        }
    }
}

/// The signing key of a record's contributions to `recipient` for `purpose`: HKDF-SHA256 of
/// the record root key's secret (salt `hearth/extract/v1`, info naming the purpose and the
/// recipient). Deterministic, so the pseudonym is stable; one-way, so pseudonyms for different
/// recipients or purposes cannot be linked without the root key.
pub fn contribution_key(
    root: &SigningKey,
    recipient: &PeerKey,
    purpose: ExtractPurpose,
) -> SigningKey {
    let ikm = Zeroizing::new(root.to_bytes());
    let mut info = Vec::with_capacity(64);
    info.extend_from_slice(b"contribution-key/");
    info.extend_from_slice(purpose.as_str().as_bytes());
    info.push(0);
    info.extend_from_slice(&recipient.0);
    let seed = Zeroizing::new(crypto::hkdf32(ikm.as_ref(), b"hearth/extract/v1", &info));
    SigningKey::from_bytes(&seed)
}

/// The record's pseudonym for `recipient` and `purpose`.
pub fn pseudonym(root: &SigningKey, recipient: &PeerKey, purpose: ExtractPurpose) -> Pseudonym {
    Pseudonym(
        contribution_key(root, recipient, purpose)
            .verifying_key()
            .to_bytes(),
    )
}

// ---------------------------------------------------------------------------------------------
// What a contribution says about the patient

/// The de-identified facts of one record, as of one day. Every field is coarse on purpose.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Age in whole years on the contribution's day, in 5-year bands (`0-4` … `85-89`, `90+`);
    /// `None` without a usable date of birth.
    pub age_band: Option<String>,
    /// Administrative gender (`male`, `female`, `other`, `unknown`).
    pub gender: Option<String>,
    /// The postcode district (outward code), e.g. `LS1`; `None` without a valid UK postcode.
    pub postcode_district: Option<String>,
    /// Current coded conditions, `system:code` (`snomed:44054006`, `icd10:E11`), sorted.
    pub conditions: Vec<String>,
    /// Current coded medicines, `system:code` (`dmd:…`, `snomed:…`), sorted.
    pub medications: Vec<String>,
}

/// The civil date (UTC) of a timestamp.
fn civil_date(t: Timestamp) -> Option<jiff::civil::Date> {
    jiff::Timestamp::from_millisecond(t.as_millis())
        .ok()
        .map(|ts| ts.to_zoned(jiff::tz::TimeZone::UTC).date())
}

/// Parses `YYYY-MM-DD`, `YYYY-MM` (taken as the 15th) or `YYYY` (taken as 1 July): the middle
/// of the period a partial date stands for.
fn parse_partial_date(text: &str) -> Option<jiff::civil::Date> {
    let parts: Vec<&str> = text.trim().split('-').collect();
    let num = |s: &str, len: usize| -> Option<i16> {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (y, m, d) = match parts.as_slice() {
        [y] => (num(y, 4)?, 7, 1),
        [y, m] => (num(y, 4)?, num(m, 2)?, 15),
        [y, m, d] => (num(y, 4)?, num(m, 2)?, num(d, 2)?),
        _ => return None,
    };
    jiff::civil::Date::new(y, i8::try_from(m).ok()?, i8::try_from(d).ok()?).ok()
}

/// The 5-year age band of someone born on `birth_date` (a full or partial date), on `on`.
/// `None` when the date is unusable, in the future, or more than 130 years ago.
pub fn age_band(birth_date: &str, on: jiff::civil::Date) -> Option<String> {
    let born = parse_partial_date(birth_date)?;
    let mut age = i32::from(on.year()) - i32::from(born.year());
    if (on.month(), on.day()) < (born.month(), born.day()) {
        age -= 1;
    }
    if !(0..=130).contains(&age) {
        return None;
    }
    if age >= TOP_AGE {
        return Some(format!("{TOP_AGE}+"));
    }
    let low = age - age % AGE_BAND_YEARS;
    Some(format!("{low}-{}", low + AGE_BAND_YEARS - 1))
}

/// The 10-year band containing a 5-year band (`40-44` → `40-49`; `90+` stays).
pub fn wider_age_band(band: &str) -> String {
    match band
        .split_once('-')
        .and_then(|(low, _)| low.parse::<i32>().ok())
    {
        Some(low) => {
            let low = low - low % 10;
            format!("{low}-{}", low + 9)
        }
        None => band.to_string(),
    }
}

/// The district (outward code) of a UK postcode, e.g. `ls1 4ap` → `LS1`; `None` when it is
/// not shaped like a postcode. The inward code (the last three characters, a digit and two
/// letters) is always dropped.
pub fn postcode_district(postcode: &str) -> Option<String> {
    let compact: String = postcode
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if !(5..=7).contains(&compact.len()) || !compact.is_ascii() {
        return None;
    }
    let (outward, inward) = compact.split_at(compact.len() - 3);
    let ib = inward.as_bytes();
    let inward_ok = ib[0].is_ascii_digit() && ib[1..].iter().all(u8::is_ascii_alphabetic);
    let ob = outward.as_bytes();
    let outward_ok = ob[0].is_ascii_alphabetic()
        && ob.iter().all(u8::is_ascii_alphanumeric)
        && ob.iter().any(u8::is_ascii_digit);
    (inward_ok && outward_ok).then(|| outward.to_string())
}

/// The postcode area of a district: its leading letters (`LS1` → `LS`).
pub fn postcode_area(district: &str) -> String {
    district
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .collect()
}

/// `system:code` for a code in a system a commissioner can aggregate by; `None` for other
/// systems or codes that do not look like codes (which might be free text).
fn code_ref(code: &schema::Code) -> Option<String> {
    let system = match code.system.as_str() {
        schema::SNOMED_CT => "snomed",
        schema::ICD_10 => "icd10",
        schema::DMD => "dmd",
        _ => return None,
    };
    let c = code.code.trim();
    let ok = (1..=32).contains(&c.len())
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    ok.then(|| format!("{system}:{c}"))
}

fn is_code_ref(s: &str) -> bool {
    match s.split_once(':') {
        Some((system, code)) => {
            matches!(system, "snomed" | "icd10" | "dmd")
                && (1..=32).contains(&code.len())
                && code
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        }
        None => false,
    }
}

fn ended_before(end: Option<&str>, on: jiff::civil::Date) -> bool {
    end.and_then(parse_partial_date).is_some_and(|e| e < on)
}

impl Profile {
    /// The de-identified facts of a record's sections on the day of `now`. Only `general`
    /// sections of the classes `demographics`, `conditions` and `medications` are read; entries
    /// entered in error, refuted or resolved conditions, and stopped or finished medicines are
    /// left out, and so are codes outside SNOMED CT, ICD-10 and dm+d. For demographics, each
    /// field comes from the newest entry that has it.
    pub fn from_sections(views: &[SectionView], now: Timestamp) -> Profile {
        let today = civil_date(now);
        let mut p = Profile::default();
        let mut birth: Option<(Timestamp, String)> = None;
        let mut gender: Option<(Timestamp, String)> = None;
        let mut postcode: Option<(Timestamp, String)> = None;
        let newer = |slot: &mut Option<(Timestamp, String)>, t: Timestamp, v: String| {
            if slot.as_ref().is_none_or(|(old, _)| t >= *old) {
                *slot = Some((t, v));
            }
        };
        let mut conditions = BTreeSet::new();
        let mut medications = BTreeSet::new();
        for view in views.iter().filter(|v| v.label == Label::General) {
            if !matches!(
                view.class,
                SectionClass::Demographics | SectionClass::Conditions | SectionClass::Medications
            ) {
                continue;
            }
            for e in &view.entries {
                if e.status == EntryStatus::EnteredInError {
                    continue;
                }
                let Ok(body) = EntryBody::from_json(view.class, &e.body) else {
                    continue;
                };
                let t = e.provenance.recorded_at;
                match body {
                    EntryBody::Demographics(d) => {
                        if let Some(b) = d.birth_date {
                            newer(&mut birth, t, b);
                        }
                        if let Some(g) = d.gender {
                            newer(&mut gender, t, g.as_str().to_string());
                        }
                        if let Some(pc) = d.postcode {
                            newer(&mut postcode, t, pc);
                        }
                    }
                    EntryBody::Condition(c) => {
                        let current = !matches!(
                            c.clinical_status,
                            Some(
                                ConditionClinicalStatus::Inactive
                                    | ConditionClinicalStatus::Remission
                                    | ConditionClinicalStatus::Resolved
                            )
                        ) && c.abatement.is_none()
                            && c.verification_status != Some(ConditionVerificationStatus::Refuted);
                        if current && let Some(r) = c.code.as_ref().and_then(code_ref) {
                            conditions.insert(r);
                        }
                    }
                    EntryBody::Medication(m) => {
                        let current = matches!(m.status, None | Some(MedicationStatus::Active))
                            && !today.is_some_and(|d| ended_before(m.end.as_deref(), d));
                        if current && let Some(r) = m.code.as_ref().and_then(code_ref) {
                            medications.insert(r);
                        }
                    }
                    _ => {}
                }
            }
        }
        p.age_band = birth.zip(today).and_then(|((_, b), d)| age_band(&b, d));
        p.gender = gender.map(|(_, g)| g);
        p.postcode_district = postcode.and_then(|(_, pc)| postcode_district(&pc));
        p.conditions = conditions.into_iter().take(MAX_CODES).collect();
        p.medications = medications.into_iter().take(MAX_CODES).collect();
        p
    }

    fn check(&self) -> Result<(), ExtractError> {
        let band_ok = self.age_band.as_deref().is_none_or(|b| {
            b == format!("{TOP_AGE}+")
                || (0..TOP_AGE)
                    .step_by(AGE_BAND_YEARS as usize)
                    .any(|l| b == format!("{l}-{}", l + AGE_BAND_YEARS - 1))
        });
        if !band_ok {
            return Err(ExtractError::Invalid("age band"));
        }
        if self
            .gender
            .as_deref()
            .is_some_and(|g| !matches!(g, "male" | "female" | "other" | "unknown"))
        {
            return Err(ExtractError::Invalid("gender"));
        }
        if self
            .postcode_district
            .as_deref()
            .is_some_and(|d| postcode_district(&format!("{d}1AA")).as_deref() != Some(d))
        {
            return Err(ExtractError::Invalid("postcode district"));
        }
        for list in [&self.conditions, &self.medications] {
            if list.len() > MAX_CODES {
                return Err(ExtractError::Invalid("too many codes"));
            }
            if !list.iter().all(|c| is_code_ref(c)) {
                return Err(ExtractError::Invalid("a code is not system:code"));
            }
            if !list.windows(2).all(|w| w[0] < w[1]) {
                return Err(ExtractError::Invalid("codes not sorted and distinct"));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Contributions

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
    body: ContributionBody,
    signed: Vec<u8>,
    signature: [u8; 64],
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

// ---------------------------------------------------------------------------------------------
// Aggregation

/// What counts can be grouped by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dimension {
    /// 5-year age band.
    AgeBand,
    /// 10-year age band (`40-49`, `90+`).
    AgeBand10,
    /// Administrative gender.
    Gender,
    /// Postcode district (`LS1`).
    PostcodeDistrict,
    /// Postcode area (`LS`).
    PostcodeArea,
    /// Each current coded condition (a record with several counts in each; `none` without).
    Condition,
    /// Each current coded medicine (as for conditions).
    Medication,
}

impl Dimension {
    /// Every dimension.
    pub const ALL: [Dimension; 7] = [
        Dimension::AgeBand,
        Dimension::AgeBand10,
        Dimension::Gender,
        Dimension::PostcodeDistrict,
        Dimension::PostcodeArea,
        Dimension::Condition,
        Dimension::Medication,
    ];

    /// The text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::AgeBand => "age-band",
            Dimension::AgeBand10 => "age-band-10",
            Dimension::Gender => "gender",
            Dimension::PostcodeDistrict => "postcode-district",
            Dimension::PostcodeArea => "postcode-area",
            Dimension::Condition => "condition",
            Dimension::Medication => "medication",
        }
    }

    /// The values a profile has in this dimension (`unknown` when absent; `none` for an empty
    /// list).
    fn values(self, p: &Profile) -> Vec<String> {
        let one = |v: Option<String>| vec![v.unwrap_or_else(|| "unknown".to_string())];
        let many = |v: &Vec<String>| {
            if v.is_empty() {
                vec!["none".to_string()]
            } else {
                v.clone()
            }
        };
        match self {
            Dimension::AgeBand => one(p.age_band.clone()),
            Dimension::AgeBand10 => one(p.age_band.as_deref().map(wider_age_band)),
            Dimension::Gender => one(p.gender.clone()),
            Dimension::PostcodeDistrict => one(p.postcode_district.clone()),
            Dimension::PostcodeArea => one(p.postcode_district.as_deref().map(postcode_area)),
            Dimension::Condition => many(&p.conditions),
            Dimension::Medication => many(&p.medications),
        }
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Dimension {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let norm = s.trim().to_ascii_lowercase().replace('_', "-");
        Dimension::ALL
            .into_iter()
            .find(|d| d.as_str() == norm)
            .ok_or_else(|| {
                let names: Vec<&str> = Dimension::ALL.iter().map(|d| d.as_str()).collect();
                format!("unknown dimension; use: {}", names.join(", "))
            })
    }
}

/// Small-number suppression and rounding of published counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Suppression {
    /// Counts from 1 up to this minus one are shown as `*` (default 8: counts 1–7). 0 or 1:
    /// nothing is suppressed.
    pub below: u64,
    /// Other counts are rounded to the nearest multiple of this (default 5; halves round up;
    /// a non-zero count never rounds to 0). 0 or 1: no rounding.
    pub round_to: u64,
}

impl Default for Suppression {
    fn default() -> Self {
        Suppression {
            below: 8,
            round_to: 5,
        }
    }
}

/// A published count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    /// Too small to show: `*`.
    Suppressed,
    /// The count after rounding.
    Shown(u64),
}

impl Suppression {
    /// How a true count `n` is published.
    pub fn apply(self, n: u64) -> Count {
        if n > 0 && n < self.below {
            return Count::Suppressed;
        }
        if self.round_to <= 1 || n == 0 {
            return Count::Shown(n);
        }
        let r = n.saturating_add(self.round_to / 2) / self.round_to * self.round_to;
        Count::Shown(r.max(self.round_to))
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Count::Suppressed => f.write_str("*"),
            Count::Shown(n) => write!(f, "{n}"),
        }
    }
}

impl Serialize for Count {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Count::Suppressed => s.serialize_str("*"),
            Count::Shown(n) => s.serialize_u64(*n),
        }
    }
}

/// One group of the result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The group's value in each dimension, in the order asked.
    pub values: Vec<String>,
    /// Its published count.
    pub count: Count,
}

/// The published result of an aggregation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    /// The dimensions, in the order asked.
    pub dimensions: Vec<Dimension>,
    /// The rule applied.
    pub suppression: Suppression,
    /// The purpose of every contribution counted (`None` when there were none).
    pub purpose: Option<ExtractPurpose>,
    /// The number of contributions, published by the same rule as the groups (an exact total
    /// beside rounded groups would give suppressed counts away).
    pub total: Count,
    /// The groups, sorted by their values.
    pub rows: Vec<Row>,
}

/// Pools verified contributions for one recipient (and purpose), refusing any for another
/// recipient or purpose and any duplicate, then publishes counts.
#[derive(Debug)]
pub struct Aggregator {
    recipient: PeerKey,
    purpose: Option<ExtractPurpose>,
    ids: HashMap<String, usize>,
    pseudonyms: HashMap<Pseudonym, usize>,
    profiles: Vec<Profile>,
}

impl Aggregator {
    /// An aggregator for `recipient`; with `purpose`, only contributions for it are accepted,
    /// else the first contribution's purpose is the only one accepted.
    pub fn new(recipient: PeerKey, purpose: Option<ExtractPurpose>) -> Self {
        Aggregator {
            recipient,
            purpose,
            ids: HashMap::new(),
            pseudonyms: HashMap::new(),
            profiles: Vec::new(),
        }
    }

    /// Adds one verified contribution, or refuses it (and keeps nothing of it).
    pub fn add(&mut self, c: Contribution) -> Result<(), ExtractError> {
        let b = c.body;
        if b.recipient != self.recipient {
            return Err(ExtractError::WrongRecipient(b.recipient));
        }
        match self.purpose {
            Some(p) if p != b.purpose => {
                return Err(ExtractError::WrongPurpose {
                    expected: p,
                    found: b.purpose,
                });
            }
            _ => {}
        }
        if let Some(&earlier) = self.ids.get(&b.id) {
            return Err(ExtractError::DuplicateContribution { earlier });
        }
        if let Some(&earlier) = self.pseudonyms.get(&b.pseudonym) {
            return Err(ExtractError::DuplicatePseudonym { earlier });
        }
        let n = self.profiles.len();
        self.purpose = Some(b.purpose);
        self.ids.insert(b.id, n);
        self.pseudonyms.insert(b.pseudonym, n);
        self.profiles.push(b.profile);
        Ok(())
    }

    /// How many contributions were accepted.
    pub fn len(&self) -> usize {
        self.profiles.len()
    }

    /// Whether none was accepted.
    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty()
    }

    /// Counts contributions grouped by `dims` (a contribution counts once in every combination
    /// of its values: a record with two conditions counts in both groups), and publishes each
    /// count and the total under `rule`.
    pub fn finish(&self, dims: &[Dimension], rule: Suppression) -> Table {
        let mut groups: BTreeMap<Vec<String>, u64> = BTreeMap::new();
        for p in &self.profiles {
            let mut combos: Vec<Vec<String>> = vec![Vec::new()];
            for d in dims {
                let values = d.values(p);
                combos = combos
                    .into_iter()
                    .flat_map(|c| {
                        values.iter().map(move |v| {
                            let mut c = c.clone();
                            c.push(v.clone());
                            c
                        })
                    })
                    .collect();
            }
            let distinct: BTreeSet<Vec<String>> = combos.into_iter().collect();
            for c in distinct {
                *groups.entry(c).or_insert(0) += 1;
            }
        }
        Table {
            dimensions: dims.to_vec(),
            suppression: rule,
            purpose: self.purpose,
            total: rule.apply(self.profiles.len() as u64),
            rows: groups
                .into_iter()
                .map(|(values, n)| Row {
                    values,
                    count: rule.apply(n),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests;
