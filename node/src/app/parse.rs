//! Parsing what the user typed, shared by several commands: sections, records, peers,
//! durations, abilities; and an end time in plain words. A misfit is a [`Failure`] with exit
//! code 3 (invalid), found before anything is unlocked or opened.

use super::invalid;
use crate::fail::{Failure, code};
use crate::home::NodeInfo;
use crate::sled_store::SledStore;
use hearth_core::grant::request::Card;
use hearth_core::grant::{self, Ability};
use hearth_core::ids::{PeerKey, RecordId};
use hearth_core::record::Vault;
use hearth_core::section::{Label, SectionName, SectionSpec};
use hearth_core::time::Timestamp;

/// A day, in milliseconds.
pub const DAY_MS: i64 = 86_400_000;

/// Parses a section name from `class[:label]` and an optional `--label`.
pub fn section_name(section: &str, label: Option<&str>) -> Result<SectionName, Failure> {
    let mut name: SectionName = section
        .parse()
        .map_err(|e| Failure::new(code::INVALID, format!("section '{}': {e}", clip(section))))?;
    if let Some(l) = label {
        if section.contains(':') {
            return Err(Failure::new(
                code::INVALID,
                "give the label either as class:label or with --label, not both",
            ));
        }
        name.label = l
            .parse::<Label>()
            .map_err(|e| Failure::new(code::INVALID, format!("--label: {e}")))?;
    }
    Ok(name)
}

fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

/// The record a command is about: `--record`, else this patient's own, else the only one held.
pub fn which_record(
    info: &NodeInfo,
    vault: &Vault<SledStore>,
    given: Option<&str>,
) -> Result<RecordId, Failure> {
    if let Some(g) = given {
        return g
            .parse::<RecordId>()
            .map_err(|e| Failure::new(code::INVALID, format!("--record: {e}")));
    }
    if let Some(r) = info.record_id {
        return Ok(r);
    }
    let records = vault.records()?;
    match records.as_slice() {
        [one] => Ok(*one),
        [] => Err(Failure::new(
            code::NOT_FOUND,
            "this node holds no record yet",
        )),
        _ => Err(Failure::new(
            code::INVALID,
            "this node holds several records; choose one with --record",
        )),
    }
}

/// The one parser of `--expires`: a number and a unit, `s`, `m` (minutes), `h`, `d`, `w`, or
/// the calendar units `mo` (months) and `y` (years), counted from `from` in UTC (a month from
/// 31 January is the last day of February). Returns the end; at most five years after `from`.
pub fn parse_expires(s: &str, from: Timestamp) -> Result<Timestamp, Failure> {
    let s = s.trim();
    let bad = || {
        invalid(format!(
            "duration '{}': use a number and s, m (minutes), h, d, w, mo (months) or y (years), \
             e.g. 30d or 6mo",
            s.chars().take(20).collect::<String>()
        ))
    };
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: i64 = num.parse().map_err(|_| bad())?;
    if n <= 0 {
        return Err(invalid("a duration must be positive"));
    }
    let fixed = |unit_ms: i64| n.checked_mul(unit_ms).ok_or_else(bad);
    let end = match unit {
        "s" => from.saturating_add_millis(fixed(1_000)?),
        "m" => from.saturating_add_millis(fixed(60_000)?),
        "h" => from.saturating_add_millis(fixed(3_600_000)?),
        "d" => from.saturating_add_millis(fixed(DAY_MS)?),
        "w" => from.saturating_add_millis(fixed(7 * DAY_MS)?),
        "mo" | "y" => {
            // Beyond five years is refused below; a bound here keeps the arithmetic in range.
            let months = if unit == "y" { n.saturating_mul(12) } else { n };
            let months = months.min(12 * 6);
            let start = jiff::Timestamp::from_millisecond(from.as_millis())
                .map_err(|_| invalid("the current time is out of range"))?
                .to_zoned(jiff::tz::TimeZone::UTC);
            let span = jiff::Span::new().try_months(months).map_err(|_| bad())?;
            let end = start.checked_add(span).map_err(|_| bad())?;
            Timestamp::from_millis(end.timestamp().as_millisecond())
        }
        _ => return Err(bad()),
    };
    if end.as_millis().saturating_sub(from.as_millis()) > grant::MAX_VALIDITY_MS {
        return Err(invalid("a duration may be five years at most"));
    }
    Ok(end)
}

/// An end time in plain words, e.g. `Thursday 3 June 2027 at 09:15 UTC`.
pub fn when_words(t: Timestamp) -> String {
    match jiff::Timestamp::from_millisecond(t.as_millis()) {
        Ok(ts) => ts
            .to_zoned(jiff::tz::TimeZone::UTC)
            .strftime("%A %-d %B %Y at %H:%M UTC")
            .to_string(),
        Err(_) => t.to_string(),
    }
}

/// Parses `--sections`: `class[:label]`, comma-separated.
pub fn parse_spec(s: &str) -> Result<SectionSpec, Failure> {
    s.parse::<SectionSpec>()
        .map_err(|e| invalid(format!("--sections: {e}")))
}

/// Parses `--ability`: read or append.
pub fn parse_ability(s: &str) -> Result<Ability, Failure> {
    let a: Ability = s.parse().map_err(invalid)?;
    if !matches!(a, Ability::Read | Ability::Append) {
        return Err(invalid("--ability must be read or append"));
    }
    Ok(a)
}

/// Parses a peer id, refusing keys that are not valid ed25519 points.
pub fn parse_peer(s: &str) -> Result<PeerKey, Failure> {
    let p: PeerKey = s
        .trim()
        .parse()
        .map_err(|e| invalid(format!("peer id: {e}")))?;
    p.verifying_key()
        .map_err(|_| invalid("peer id: not a valid ed25519 key"))?;
    Ok(p)
}

/// A peer id, or a contact card (which also gives the agreement key).
pub fn parse_recipient(s: &str) -> Result<(PeerKey, Option<Card>), Failure> {
    if s.trim().to_ascii_uppercase().starts_with("HEARTH1I") {
        let card =
            Card::from_token(s).map_err(|e| invalid(format!("contact card refused: {e}")))?;
        Ok((card.body().peer, Some(card)))
    } else {
        Ok((parse_peer(s)?, None))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    /// Issue #11: `--expires` took no months, and years were 365 days.
    #[test]
    fn expires_takes_calendar_months_and_years() {
        let from = at("2027-01-31T09:15:00Z");
        let cases = [
            ("90s", "2027-01-31T09:16:30Z"),
            ("45m", "2027-01-31T10:00:00Z"),
            ("12h", "2027-01-31T21:15:00Z"),
            ("30d", "2027-03-02T09:15:00Z"),
            ("2w", "2027-02-14T09:15:00Z"),
            ("1mo", "2027-02-28T09:15:00Z"),
            ("13mo", "2028-02-29T09:15:00Z"),
            ("1y", "2028-01-31T09:15:00Z"),
            ("5y", "2032-01-31T09:15:00Z"),
            (" 6mo ", "2027-07-31T09:15:00Z"),
        ];
        for (arg, want) in cases {
            assert_eq!(parse_expires(arg, from).unwrap(), at(want), "{arg}");
        }
        let leap = at("2028-02-29T00:00:00Z");
        assert_eq!(
            parse_expires("1y", leap).unwrap(),
            at("2029-02-28T00:00:00Z")
        );
        for bad in [
            "6y",
            "61mo",
            "0d",
            "0mo",
            "-1d",
            "mo",
            "1",
            "1x",
            "1 mo",
            "1M",
            "1yr",
            "",
            "99999999999999999999d",
            "9223372036854775807y",
        ] {
            assert!(parse_expires(bad, from).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn the_end_in_plain_words() {
        assert_eq!(
            when_words(at("2027-06-03T09:05:00Z")),
            "Thursday 3 June 2027 at 09:05 UTC"
        );
    }
}
