//! Pooling: an [`Aggregator`] accepts verified contributions for one recipient and purpose and
//! publishes counts with small-number suppression ([`Suppression`]).

use super::{
    Contribution, ExtractError, ExtractPurpose, Profile, Pseudonym, postcode_area, wider_age_band,
};
use crate::ids::PeerKey;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

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
