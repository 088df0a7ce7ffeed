//! NHS numbers: the ten-digit identifier of a patient in the NHS in England, Wales and the Isle
//! of Man, together with the number ranges used in Scotland (CHI) and Northern Ireland (H&C).
//!
//! An [`NhsNumber`] can only be made by parsing, and parsing checks everything that can be
//! checked without asking the NHS Spine:
//!
//! 1. the input is at most 32 characters, and is made of digits, optionally grouped with spaces
//!    or hyphens (`943 476 5919`, `943-476-5919`);
//! 2. there are exactly ten digits;
//! 3. the tenth digit is the Modulus 11 check digit of the first nine: multiply them by the
//!    weights 10, 9, …, 2, add up, take the remainder modulo 11 and subtract it from 11. A result
//!    of 11 means a check digit of 0; a result of 10 means the number is never issued. Modulus 11
//!    catches every single mistyped digit and most swaps of neighbouring digits;
//! 4. the number lies in a range that is issued: Scotland's CHI numbers (`0101000000` to
//!    `3112999999`), Northern Ireland (`3200000010` to `3999999999`), England, Wales and the Isle
//!    of Man (`4000000000` to `4999999999` and `6000000000` to `7999999999`), and the test range
//!    (`9000000000` to `9999999999`), which is never given to a real person.
//!
//! A valid number is not proof that it belongs to the patient: only a Spine trace shows that.
//!
//! Errors ([`NhsError`]) say what is wrong in plain English and never repeat the number, so they
//! are safe to show and to log.
//!
//! ```
//! use hearth_core::nhs::{NhsError, NhsNumber};
//!
//! let n: NhsNumber = "943 476 5919".parse().unwrap();
//! assert_eq!(n.as_str(), "9434765919");
//! assert_eq!(n.formatted(), "943 476 5919");
//! assert!(n.is_test_number());
//!
//! assert_eq!(
//!     "943476591".parse::<NhsNumber>(),
//!     Err(NhsError::WrongLength { digits: 9 })
//! );
//! assert_eq!(
//!     "9434765918".parse::<NhsNumber>(),
//!     Err(NhsError::CheckDigit { expected: 9, found: 8 })
//! );
//! ```

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The longest input [`NhsNumber::from_str`] looks at, in bytes (characters, for the ASCII a
/// valid number is written in); anything longer is refused unread.
pub const MAX_INPUT_LEN: usize = 32;

/// The inclusive ranges of issued numbers (and the test range), as integers.
const ISSUED_RANGES: [(u64, u64); 5] = [
    // Scotland: Community Health Index (CHI) numbers start with the date of birth, DDMMYY.
    (101_000_000, 3_112_999_999),
    // Northern Ireland: Health and Care numbers.
    (3_200_000_010, 3_999_999_999),
    // England, Wales and the Isle of Man.
    (4_000_000_000, 4_999_999_999),
    (6_000_000_000, 7_999_999_999),
    // Test numbers, never issued to a real person.
    (9_000_000_000, 9_999_999_999),
];

/// A valid NHS number: exactly ten ASCII digits with a correct Modulus 11 check digit, in an
/// issued range. Serialised as a plain string of ten digits; deserialising validates.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NhsNumber(String);

/// Why a string is not a valid NHS number. The messages never include the number itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NhsError {
    /// The input is longer than [`MAX_INPUT_LEN`] characters, so it was not examined.
    #[error("NHS number is too long: at most {MAX_INPUT_LEN} characters are accepted")]
    TooLong,
    /// The input contains something other than digits, or spaces and hyphens between them.
    #[error("NHS number must contain only digits, optionally grouped with spaces or hyphens")]
    NotDigits,
    /// The input does not have exactly ten digits.
    #[error("NHS number must have 10 digits, found {digits}")]
    WrongLength {
        /// How many digits were found.
        digits: usize,
    },
    /// The Modulus 11 check digit of the first nine digits would be 10: no such number is issued.
    #[error("NHS number is not valid: no number with these first nine digits is ever issued")]
    NeverIssued,
    /// The last digit is not the Modulus 11 check digit of the first nine: usually a mistyped or
    /// swapped digit.
    #[error(
        "NHS number check digit is wrong (expected {expected}, found {found}): a digit is probably mistyped"
    )]
    CheckDigit {
        /// The check digit the first nine digits call for.
        expected: u8,
        /// The last digit given.
        found: u8,
    },
    /// The number has a correct check digit but lies outside every range issued in the UK.
    #[error("NHS number is not in any range issued in the UK")]
    OutOfRange,
}

/// The Modulus 11 check digit for nine digits (each 0..=9), or `None` when it would be 10 (such
/// numbers are never issued).
fn check_digit(first_nine: &[u8]) -> Option<u8> {
    let sum: u32 = first_nine
        .iter()
        .zip((2..=10u32).rev())
        .map(|(&d, weight)| u32::from(d) * weight)
        .sum();
    match 11 - sum % 11 {
        11 => Some(0),
        10 => None,
        // 1..=9, so it fits in a u8.
        check => u8::try_from(check).ok(),
    }
}

impl NhsNumber {
    /// The ten digits, without spaces.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is a test number (it starts with 9). Test numbers are never issued to a real
    /// person, so they are safe in examples, demos and test data.
    pub fn is_test_number(&self) -> bool {
        self.0.starts_with('9')
    }

    /// The number grouped 3-3-4 the way the NHS prints it, e.g. `943 476 5919`.
    pub fn formatted(&self) -> String {
        let d = &self.0;
        format!("{} {} {}", &d[..3], &d[3..6], &d[6..])
    }
}

impl fmt::Display for NhsNumber {
    /// The ten digits, without spaces; use [`NhsNumber::formatted`] for the grouped form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for NhsNumber {
    type Err = NhsError;

    /// Parses and validates a number. Spaces and hyphens between digit groups are dropped;
    /// surrounding spaces are ignored; nothing else is allowed.
    fn from_str(input: &str) -> Result<Self, NhsError> {
        if input.len() > MAX_INPUT_LEN {
            return Err(NhsError::TooLong);
        }
        let trimmed = input.trim_matches(' ');
        // A separator must sit between digits: a leading or trailing hyphen is not a grouping.
        if trimmed.starts_with('-') || trimmed.ends_with('-') {
            return Err(NhsError::NotDigits);
        }
        let mut digits: Vec<u8> = Vec::with_capacity(10);
        for byte in trimmed.bytes() {
            match byte {
                b'0'..=b'9' => digits.push(byte - b'0'),
                b' ' | b'-' => {}
                _ => return Err(NhsError::NotDigits),
            }
        }
        let [first_nine @ .., last] = digits.as_slice() else {
            return Err(NhsError::WrongLength { digits: 0 });
        };
        if digits.len() != 10 {
            return Err(NhsError::WrongLength {
                digits: digits.len(),
            });
        }
        let expected = check_digit(first_nine).ok_or(NhsError::NeverIssued)?;
        if expected != *last {
            return Err(NhsError::CheckDigit {
                expected,
                found: *last,
            });
        }
        let value = digits.iter().fold(0u64, |acc, &d| acc * 10 + u64::from(d));
        if !ISSUED_RANGES
            .iter()
            .any(|&(low, high)| (low..=high).contains(&value))
        {
            return Err(NhsError::OutOfRange);
        }
        Ok(NhsNumber(
            digits.iter().map(|&d| char::from(b'0' + d)).collect(),
        ))
    }
}

impl Serialize for NhsNumber {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for NhsNumber {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The valid numbers of `shared/fixtures/nhs-numbers.txt`.
    const FIXTURE_VALID: &[&str] = &["9434765919", "9000000009", "4010232137"];

    /// The invalid numbers of `shared/fixtures/nhs-numbers.txt`, with the error each must give.
    const FIXTURE_INVALID: &[(&str, NhsError)] = &[
        // wrong check digit
        (
            "9434765918",
            NhsError::CheckDigit {
                expected: 9,
                found: 8,
            },
        ),
        // check digit would be 10: never issued
        ("1234567890", NhsError::NeverIssued),
        // nine digits
        ("943476591", NhsError::WrongLength { digits: 9 }),
        // eleven digits
        ("94347659190", NhsError::WrongLength { digits: 11 }),
        // not a digit
        ("943476591X", NhsError::NotDigits),
    ];

    /// The check digit computed independently of `check_digit`, the slow way; 10 means never
    /// issued.
    fn reference_check(nine: &[u8]) -> u8 {
        let mut sum = 0u32;
        for (i, d) in nine.iter().enumerate() {
            sum += u32::from(*d) * (10 - i as u32);
        }
        let c = 11 - (sum % 11);
        if c == 11 { 0 } else { c as u8 }
    }

    fn in_issued_range(digits: &str) -> bool {
        let v: u64 = digits.parse().unwrap();
        (101_000_000..=3_112_999_999).contains(&v)
            || (3_200_000_010..=3_999_999_999).contains(&v)
            || (4_000_000_000..=4_999_999_999).contains(&v)
            || (6_000_000_000..=7_999_999_999).contains(&v)
            || (9_000_000_000..=9_999_999_999).contains(&v)
    }

    fn to_string(digits: &[u8]) -> String {
        digits.iter().map(|d| char::from(b'0' + d)).collect()
    }

    #[test]
    fn fixture_valid_numbers_parse() {
        for s in FIXTURE_VALID {
            let n: NhsNumber = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(n.as_str(), *s);
            assert_eq!(n.to_string(), *s);
        }
    }

    #[test]
    fn fixture_invalid_numbers_give_the_right_error() {
        for (s, want) in FIXTURE_INVALID {
            assert_eq!(s.parse::<NhsNumber>().as_ref(), Err(want), "{s}");
        }
    }

    #[test]
    fn spaces_and_hyphens_between_groups_are_accepted() {
        for s in [
            "943 476 5919",
            "943-476-5919",
            "  943 476 5919 ",
            "943 - 476 - 5919",
            "9434765919",
        ] {
            let n: NhsNumber = s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"));
            assert_eq!(n.as_str(), "9434765919");
        }
        for s in [
            "-9434765919",
            "9434765919-",
            "943_476_5919",
            "943\t476\t5919",
            "943.476.5919",
            "+449434765919",
            "９434765919", // a full-width digit
        ] {
            assert_eq!(s.parse::<NhsNumber>(), Err(NhsError::NotDigits), "{s:?}");
        }
    }

    #[test]
    fn empty_and_overlong_inputs() {
        assert_eq!(
            "".parse::<NhsNumber>(),
            Err(NhsError::WrongLength { digits: 0 })
        );
        assert_eq!(
            "   ".parse::<NhsNumber>(),
            Err(NhsError::WrongLength { digits: 0 })
        );
        let long = format!("943 476 5919{}", " ".repeat(MAX_INPUT_LEN));
        assert_eq!(long.parse::<NhsNumber>(), Err(NhsError::TooLong));
        let just_fits = format!("9434765919{}", " ".repeat(MAX_INPUT_LEN - 10));
        assert!(just_fits.parse::<NhsNumber>().is_ok());
    }

    #[test]
    fn ranges() {
        // Each candidate is completed with its check digit, then checked against the ranges.
        let cases: &[(&str, bool)] = &[
            ("010100000", true),  // first CHI number (01 Jan 00)
            ("311299999", true),  // last CHI number
            ("311300000", false), // between CHI and Northern Ireland
            ("000000000", false),
            ("320000001", true), // Northern Ireland
            ("399999999", true),
            ("400000000", true), // England, Wales, Isle of Man
            ("500000000", false),
            ("599999999", false),
            ("600000000", true),
            ("799999999", true),
            ("800000000", false),
            ("899999999", false),
            ("900000000", true), // test numbers
        ];
        for (nine, in_range) in cases {
            let digits: Vec<u8> = nine.bytes().map(|b| b - b'0').collect();
            let mut check = reference_check(&digits);
            let mut digits = digits;
            if check == 10 {
                // Step the eighth digit until the number can be completed; stays in the same range.
                while check == 10 {
                    digits[7] = (digits[7] + 1) % 10;
                    check = reference_check(&digits);
                }
            }
            digits.push(check);
            let s = to_string(&digits);
            let got = s.parse::<NhsNumber>();
            if *in_range {
                assert!(got.is_ok(), "{s}: {got:?}");
            } else {
                assert_eq!(got, Err(NhsError::OutOfRange), "{s}");
            }
        }
    }

    #[test]
    fn formatting_and_test_numbers() {
        let n: NhsNumber = "9434765919".parse().unwrap();
        assert_eq!(n.formatted(), "943 476 5919");
        assert_eq!(format!("{n}"), "9434765919");
        assert!(n.is_test_number());
        let real: NhsNumber = "4010232137".parse().unwrap();
        assert!(!real.is_test_number());
    }

    #[test]
    fn serde_is_a_validated_plain_string() {
        let n: NhsNumber = "9434765919".parse().unwrap();
        let json = serde_json::to_string(&n).unwrap();
        assert_eq!(json, "\"9434765919\"");
        assert_eq!(serde_json::from_str::<NhsNumber>(&json).unwrap(), n);
        // The grouped form is accepted and normalised.
        assert_eq!(
            serde_json::from_str::<NhsNumber>("\"943 476 5919\"").unwrap(),
            n
        );
        let err = serde_json::from_str::<NhsNumber>("\"9434765918\"").unwrap_err();
        assert!(err.to_string().contains("check digit"), "{err}");
        assert!(serde_json::from_str::<NhsNumber>("9434765919").is_err());
    }

    #[test]
    fn errors_never_echo_the_number() {
        for (s, _) in FIXTURE_INVALID {
            let message = s.parse::<NhsNumber>().unwrap_err().to_string();
            assert!(!message.contains(s), "{message}");
            assert!(!message.contains("943"), "{message}");
        }
        let message = "5000000009".parse::<NhsNumber>().unwrap_err().to_string();
        assert!(!message.contains("5000"), "{message}");
    }

    /// Nine digits whose check digit exists and whose completed number is in an issued range,
    /// completed with that check digit.
    fn valid_number() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(0u8..10, 9).prop_filter_map(
            "check digit 10 or out of range",
            |mut d| {
                let c = reference_check(&d);
                if c == 10 {
                    return None;
                }
                d.push(c);
                in_issued_range(&to_string(&d)).then_some(d)
            },
        )
    }

    proptest! {
        #[test]
        fn nine_digits_plus_their_check_digit_parse(
            nine in proptest::collection::vec(0u8..10, 9)
        ) {
            let check = reference_check(&nine);
            prop_assume!(check != 10);
            let mut digits = nine;
            digits.push(check);
            let s = to_string(&digits);
            prop_assume!(in_issued_range(&s));
            let n: NhsNumber = s.parse().map_err(|e| TestCaseError::fail(format!("{s}: {e}")))?;
            prop_assert_eq!(n.as_str(), s.as_str());
        }

        #[test]
        fn nine_digits_with_check_digit_10_are_never_issued(
            eight in proptest::collection::vec(0u8..10, 8),
            last in 0u8..10,
        ) {
            // Choose the ninth digit so that the check digit would be 10 (one of 11 residues is
            // unreachable with a single digit; those cases are skipped).
            let ninth = (0u8..10).find(|&d| {
                let mut nine = eight.clone();
                nine.push(d);
                reference_check(&nine) == 10
            });
            prop_assume!(ninth.is_some());
            let mut digits = eight;
            digits.extend(ninth);
            digits.push(last);
            prop_assert_eq!(to_string(&digits).parse::<NhsNumber>(), Err(NhsError::NeverIssued));
        }

        #[test]
        fn any_single_digit_change_is_rejected(
            digits in valid_number(),
            position in 0usize..10,
            delta in 1u8..10,
        ) {
            let mut changed = digits.clone();
            changed[position] = (changed[position] + delta) % 10;
            let s = to_string(&changed);
            prop_assert!(s.parse::<NhsNumber>().is_err(), "{} accepted", s);
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(s in any::<String>()) {
            let _ = s.parse::<NhsNumber>();
        }

        #[test]
        fn parsing_digit_soup_never_panics(s in "[0-9 \\-X]{0,40}") {
            if let Ok(n) = s.parse::<NhsNumber>() {
                prop_assert_eq!(n.as_str().len(), 10);
                prop_assert!(n.as_str().bytes().all(|b| b.is_ascii_digit()));
            }
        }
    }
}
