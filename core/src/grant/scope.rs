//! What a grant allows: abilities, purposes, scopes, and which section keys a holder of some
//! scopes may receive.

use crate::ids::SectionId;
use crate::section::{Label, SectionClass, SectionName, SectionPattern, SectionSpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// What a holder may do with a section. Ordered: each includes those before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ability {
    /// Store and forward ciphertext, without keys (relays).
    Relay,
    /// Decrypt and read.
    Read,
    /// Read, add entries, and add new versions of one's own entries.
    Append,
    /// Everything: the patient's own devices.
    Admin,
}

impl Ability {
    /// Every ability, lowest first.
    const ALL: [Ability; 4] = [
        Ability::Relay,
        Ability::Read,
        Ability::Append,
        Ability::Admin,
    ];

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Ability::Relay => "relay",
            Ability::Read => "read",
            Ability::Append => "append",
            Ability::Admin => "admin",
        }
    }

    /// Whether a holder of this ability receives section keys: `read` and above. `relay`
    /// never does (it stores and forwards ciphertext); see [`key_sections`].
    pub fn carries_keys(self) -> bool {
        self >= Ability::Read
    }
}

impl FromStr for Ability {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        by_name(&Ability::ALL, Ability::as_str, s)
            .ok_or("ability must be relay, read, append or admin")
    }
}

/// Why access is sought (FHIR purpose of use).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Purpose {
    /// Direct care of the patient.
    DirectCare,
    /// Social care of the patient.
    SocialCare,
    /// Emergency treatment.
    Emergency,
    /// Research.
    Research,
    /// Planning and commissioning of services.
    Planning,
    /// Acting for the patient: a carer, parent or attorney the patient chose as proxy. A
    /// proxy reads what its grant names and, when the grant lets it delegate (depth 1),
    /// answers access requests on the patient's behalf: an approval is a delegation of the
    /// proxy grant, for the purpose the requester asked.
    Proxy,
}

impl Purpose {
    /// Every purpose.
    const ALL: [Purpose; 6] = [
        Purpose::DirectCare,
        Purpose::SocialCare,
        Purpose::Emergency,
        Purpose::Research,
        Purpose::Planning,
        Purpose::Proxy,
    ];

    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::DirectCare => "direct-care",
            Purpose::SocialCare => "social-care",
            Purpose::Emergency => "emergency",
            Purpose::Research => "research",
            Purpose::Planning => "planning",
            Purpose::Proxy => "proxy",
        }
    }

    /// Plain words for people.
    pub fn words(self) -> &'static str {
        match self {
            Purpose::DirectCare => "direct care",
            Purpose::SocialCare => "social care",
            Purpose::Emergency => "emergency treatment",
            Purpose::Research => "research",
            Purpose::Planning => "planning services",
            Purpose::Proxy => "acting for you as your proxy",
        }
    }
}

impl FromStr for Purpose {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        by_name(&Purpose::ALL, Purpose::as_str, s).ok_or(
            "purpose must be direct-care, social-care, emergency, research, planning or proxy",
        )
    }
}

/// The one of `all` whose name is `s`.
fn by_name<T: Copy>(all: &[T], name: fn(T) -> &'static str, s: &str) -> Option<T> {
    all.iter().copied().find(|t| name(*t) == s)
}

/// One scope: a section pattern (class and one label, or every label) and an ability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// The section class.
    pub class: SectionClass,
    /// One label, or `None` for every label.
    pub label: Option<Label>,
    /// The ability.
    pub ability: Ability,
}

impl Scope {
    /// Whether this scope allows `ability` on section `name`.
    pub fn allows(&self, name: &SectionName, ability: Ability) -> bool {
        self.pattern().matches(name) && self.ability >= ability
    }

    /// Whether `other` is within this scope.
    pub fn covers(&self, other: &Scope) -> bool {
        self.class == other.class
            && self.ability >= other.ability
            && match (self.label, other.label) {
                (None, _) => true,
                (Some(a), Some(b)) => a == b,
                (Some(_), None) => false,
            }
    }

    /// The section pattern.
    pub fn pattern(&self) -> SectionPattern {
        SectionPattern {
            class: self.class,
            label: self.label,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.pattern(), self.ability.as_str())
    }
}

/// Scopes for every pattern of `spec` with one ability.
pub fn scopes(spec: &SectionSpec, ability: Ability) -> Vec<Scope> {
    let mut v: Vec<Scope> = spec
        .0
        .iter()
        .map(|p| Scope {
            class: p.class,
            label: p.label,
            ability,
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The sections whose keys a holder of `scopes` may receive, among the sections of
/// `directory`: the auth document and every section a scope lets it read, or none at all when
/// no scope carries keys ([`Ability::carries_keys`]: a `relay`-only holder gets no key, not
/// even the auth document's). The one rule every path that wraps keys for a grantee follows
/// (sync sessions, keys embedded in grants, approved requests).
pub fn key_sections(
    scopes: &[Scope],
    directory: &BTreeMap<SectionId, SectionName>,
) -> Vec<SectionId> {
    if !scopes.iter().any(|s| s.ability.carries_keys()) {
        return Vec::new();
    }
    std::iter::once(SectionId::AUTH)
        .chain(
            directory
                .iter()
                .filter(|(_, n)| scopes.iter().any(|s| s.allows(n, Ability::Read)))
                .map(|(s, _)| *s),
        )
        .collect()
}
