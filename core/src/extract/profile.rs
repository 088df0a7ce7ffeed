//! What a contribution says about the patient: the coarse, de-identified [`Profile`] and the
//! rules that make it coarse (age bands, postcode districts, codes only).

use super::{AGE_BAND_YEARS, ExtractError, MAX_CODES, TOP_AGE};
use crate::entry::EntryStatus;
use crate::entry::schema::{
    self, ConditionClinicalStatus, ConditionVerificationStatus, EntryBody, MedicationStatus,
};
use crate::record::SectionView;
use crate::section::{Label, SectionClass};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

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
pub(super) fn civil_date(t: Timestamp) -> Option<jiff::civil::Date> {
    jiff::Timestamp::from_millisecond(t.as_millis())
        .ok()
        .map(|ts| ts.to_zoned(jiff::tz::TimeZone::UTC).date())
}

/// Parses `YYYY-MM-DD`, `YYYY-MM` (taken as the 15th) or `YYYY` (taken as 1 July): the middle
/// of the period a partial date stands for.
pub(super) fn parse_partial_date(text: &str) -> Option<jiff::civil::Date> {
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
        return Some(top_band());
    }
    Some(band_from(age - age % AGE_BAND_YEARS))
}

/// The text of the top age band, `90+`.
fn top_band() -> String {
    format!("{TOP_AGE}+")
}

/// The text of the 5-year band starting at `low` (`40-44`).
fn band_from(low: i32) -> String {
    format!("{low}-{}", low + AGE_BAND_YEARS - 1)
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

/// The code systems a commissioner can aggregate by: the entry schema's system URI and the
/// short name a contribution writes before the code.
const CODE_SYSTEMS: [(&str, &str); 3] = [
    (schema::SNOMED_CT, "snomed"),
    (schema::ICD_10, "icd10"),
    (schema::DMD, "dmd"),
];

/// Whether `code` looks like a code (1 to 32 letters, digits, dots or hyphens), not free text.
fn is_code(code: &str) -> bool {
    (1..=32).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// `system:code` for a code in a system a commissioner can aggregate by; `None` for other
/// systems or codes that do not look like codes (which might be free text).
fn code_ref(code: &schema::Code) -> Option<String> {
    let (_, system) = CODE_SYSTEMS
        .iter()
        .find(|(uri, _)| *uri == code.system.as_str())?;
    let c = code.code.trim();
    is_code(c).then(|| format!("{system}:{c}"))
}

/// Whether `s` is a `system:code` as [`code_ref`] writes them.
fn is_code_ref(s: &str) -> bool {
    s.split_once(':').is_some_and(|(system, code)| {
        CODE_SYSTEMS.iter().any(|(_, short)| *short == system) && is_code(code)
    })
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

    pub(super) fn check(&self) -> Result<(), ExtractError> {
        let band_ok = self.age_band.as_deref().is_none_or(|b| {
            b == top_band()
                || (0..TOP_AGE)
                    .step_by(AGE_BAND_YEARS as usize)
                    .any(|l| b == band_from(l))
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
