//! Dates and date-times as entries hold them: ISO 8601 calendar dates (with FHIR's partial
//! forms) and RFC 3339 date-times with an offset.

pub(super) const DATE_FORMAT: &str = "must be a date written YYYY-MM-DD, YYYY-MM or YYYY";
pub(super) const DATETIME_FORMAT: &str = "must be a date and time with a UTC offset, e.g. \
     2024-05-01T14:30:00Z or 2024-05-01T14:30:00+01:00, or a date written YYYY-MM-DD, YYYY-MM or YYYY";
pub(super) const NOT_A_DATE: &str = "is not a real calendar date";

/// Checks an ISO 8601 calendar date, `YYYY-MM-DD`, or the partial `YYYY-MM` or `YYYY`.
pub(crate) fn check_date(text: &str) -> Result<(), &'static str> {
    let b = text.as_bytes();
    let number = |from: usize, to: usize| -> Option<i16> {
        b.get(from..to)?.iter().try_fold(0i16, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + i16::from(d - b'0'))
        })
    };
    let dash = |i: usize| b.get(i) == Some(&b'-');
    let (year, month, day) = match b.len() {
        4 => (number(0, 4), Some(1), Some(1)),
        7 if dash(4) => (number(0, 4), number(5, 7), Some(1)),
        10 if dash(4) && dash(7) => (number(0, 4), number(5, 7), number(8, 10)),
        _ => return Err(DATE_FORMAT),
    };
    let (Some(year), Some(month), Some(day)) = (year, month, day) else {
        return Err(DATE_FORMAT);
    };
    let month = i8::try_from(month).map_err(|_| NOT_A_DATE)?;
    let day = i8::try_from(day).map_err(|_| NOT_A_DATE)?;
    if year == 0 {
        return Err(NOT_A_DATE);
    }
    jiff::civil::Date::new(year, month, day)
        .map(drop)
        .map_err(|_| NOT_A_DATE)
}

/// Checks an RFC 3339 date-time with an offset (`2024-05-01T14:30:00Z`, fractional seconds
/// allowed) or a date as [`check_date`] accepts.
pub(crate) fn check_datetime(text: &str) -> Result<(), &'static str> {
    let as_datetime = |p: &'static str| if p == DATE_FORMAT { DATETIME_FORMAT } else { p };
    let Some((date, time)) = text.split_once('T') else {
        return check_date(text).map_err(as_datetime);
    };
    if date.len() != 10 {
        return Err(DATETIME_FORMAT);
    }
    check_date(date).map_err(as_datetime)?;
    if !rfc3339_time_shape(time.as_bytes()) {
        return Err(DATETIME_FORMAT);
    }
    text.parse::<jiff::Timestamp>()
        .map(drop)
        .map_err(|_| "is not a real date and time")
}

/// `HH:MM:SS`, then optionally `.` and 1 to 9 digits, then `Z` or `+HH:MM` or `-HH:MM`.
pub(super) fn rfc3339_time_shape(b: &[u8]) -> bool {
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let (hms, mut rest) = match b {
        [h1, h2, b':', m1, m2, b':', s1, s2, rest @ ..] => ([*h1, *h2, *m1, *m2, *s1, *s2], rest),
        _ => return false,
    };
    if !digits(&hms) {
        return false;
    }
    if let [b'.', fraction @ ..] = rest {
        let n = fraction.iter().take_while(|d| d.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return false;
        }
        rest = &fraction[n..];
    }
    match rest {
        [b'Z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => digits(&[*h1, *h2, *m1, *m2]),
        _ => false,
    }
}

/// Whether `end` is not before `start`, both already checked as dates or date-times. Two
/// date-times with offsets compare as instants; otherwise the calendar dates compare to the
/// precision both have (so `2024` is not before `2024-05-01`).
pub(super) fn not_before(end: &str, start: &str) -> bool {
    if let (Ok(end), Ok(start)) = (
        end.parse::<jiff::Timestamp>(),
        start.parse::<jiff::Timestamp>(),
    ) {
        return end >= start;
    }
    let n = end.len().min(start.len()).min(10);
    end.as_bytes().get(..n) >= start.as_bytes().get(..n)
}
