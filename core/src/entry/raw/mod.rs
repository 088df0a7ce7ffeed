//! Reading stored entry JSON as text, without building `serde_json::Value`s: the members of an
//! object, and whether a text is exactly what serde_json writes for the value it holds (so that
//! it can be copied into output as it is).
//!
//! Every function here is conservative: anything unusual (white space, escapes in keys, numbers
//! serde_json would write differently, deep nesting) makes it answer `None`, and the caller takes
//! the slower path through a `Value`, which gives the same output.

/// The deepest nesting followed, below serde_json's own limit (128): whatever a scan here
/// accepts, serde_json accepts too; anything deeper takes the `Value` path.
const MAX_DEPTH: usize = 100;

use super::schema::{SOURCE, SOURCE_RESOURCE};

struct Cursor<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Self {
        Cursor {
            s,
            b: s.as_bytes(),
            i: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.i += 1;
        }
    }

    /// A string at the cursor: its contents (between the quotes), and whether it has escapes.
    /// With `strict`, only the escapes serde_json writes are accepted.
    fn string(&mut self, strict: bool) -> Option<(&'a str, bool)> {
        self.eat(b'"')?;
        let start = self.i;
        let mut escaped = false;
        loop {
            self.i = plain_run(self.b, self.i);
            match self.peek()? {
                b'"' => {
                    let text = self.s.get(start..self.i)?;
                    self.i += 1;
                    return Some((text, escaped));
                }
                b'\\' => {
                    escaped = true;
                    let e = *self.b.get(self.i + 1)?;
                    match e {
                        b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 2,
                        b'/' if !strict => self.i += 2,
                        b'u' => {
                            let hex = self.b.get(self.i + 2..self.i + 6)?;
                            if strict {
                                // serde_json writes \u00XX (lower-case hex) for the control
                                // characters without a short escape, and nothing else.
                                let code = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16)
                                    .ok()
                                    .filter(|_| hex[..2] == *b"00")?;
                                let short = matches!(code, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d);
                                let lower = hex.iter().all(|h| !h.is_ascii_uppercase());
                                if code >= 0x20 || short || !lower {
                                    return None;
                                }
                            } else if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.i += 6;
                        }
                        _ => return None,
                    }
                }
                c if c < 0x20 => return None,
                _ => self.i += 1,
            }
        }
    }

    /// A number at the cursor, checked against JSON's grammar:
    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number_token(&mut self) -> Option<&'a str> {
        let start = self.i;
        let digits = |c: &mut Self| {
            let from = c.i;
            while matches!(c.peek(), Some(b'0'..=b'9')) {
                c.i += 1;
            }
            c.i > from
        };
        let _ = self.eat(b'-');
        if self.eat(b'0').is_none() && !digits(self) {
            return None;
        }
        if self.eat(b'.').is_some() && !digits(self) {
            return None;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !digits(self) {
                return None;
            }
        }
        Some(&self.s[start..self.i])
    }

    fn literal(&mut self) -> Option<()> {
        for lit in ["true", "false", "null"] {
            if self.s[self.i..].starts_with(lit) {
                self.i += lit.len();
                return Some(());
            }
        }
        None
    }

    /// Reads the object at the cursor (white space allowed), calling `f` for each member with
    /// the key, whether the key has escapes, and the cursor on the value, which `f` consumes.
    fn each_member(
        &mut self,
        mut f: impl FnMut(&mut Self, &'a str, bool) -> Option<()>,
    ) -> Option<()> {
        self.eat(b'{')?;
        self.ws();
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            self.ws();
            let (key, escaped) = self.string(false)?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            f(self, key, escaped)?;
            self.ws();
            if self.eat(b',').is_none() {
                return self.eat(b'}');
            }
        }
    }

    /// Skips one value (any JSON, white space allowed), returning its text.
    fn skip_value(&mut self, depth: usize) -> Option<&'a str> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        let start = self.i;
        match self.peek()? {
            b'{' => self.each_member(|c, _, _| c.skip_value(depth + 1).map(|_| ()))?,
            b'[' => {
                self.i += 1;
                self.ws();
                if self.eat(b']').is_none() {
                    loop {
                        self.skip_value(depth + 1)?;
                        self.ws();
                        if self.eat(b',').is_none() {
                            self.eat(b']')?;
                            break;
                        }
                    }
                }
            }
            b'"' => {
                self.string(false)?;
            }
            b't' | b'f' | b'n' => self.literal()?,
            _ => {
                self.number_token()?;
            }
        }
        self.s.get(start..self.i)
    }
}

/// The end of the run of plain string bytes (not `"`, `\\` or a control character) starting at
/// `i`, eight bytes at a time (as serde_json's own reader does).
fn plain_run(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = b.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        // A byte is special if it is below 0x20, or equal to `"` or `\\` (zero after xor).
        let below = x.wrapping_sub(ONES * 0x20);
        let quote = x ^ (ONES * u64::from(b'"'));
        let slash = x ^ (ONES * u64::from(b'\\'));
        let special = (below | quote.wrapping_sub(ONES) | slash.wrapping_sub(ONES)) & !x & HIGHS;
        if special != 0 {
            // The lowest flagged byte is the first special one (borrows only run upwards).
            return i + (special.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            break;
        }
        i += 1;
    }
    i
}

/// The members of a JSON object text, in order: each key (without its quotes) and the text of
/// its value. `None` if the text is not one object, or a key has an escape (compared as text, it
/// could differ from the key it stands for).
pub(crate) fn members(text: &str) -> Option<Vec<(&str, &str)>> {
    let mut c = Cursor::new(text);
    let mut out = Vec::new();
    c.ws();
    c.each_member(|c, key, escaped| {
        let value = c.skip_value(1).filter(|_| !escaped)?;
        out.push((key, value));
        Some(())
    })?;
    c.ws();
    (c.i == c.b.len()).then_some(out)
}

/// The text of member `key` of a JSON object text (the last one, as serde_json keeps it).
pub(crate) fn member<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    members(text)?
        .into_iter()
        .rev()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// An entry body read in one pass ([`body_parts`]).
#[derive(Debug, Default)]
pub(crate) struct BodyParts<'a> {
    /// The members other than `source`: key and value text.
    pub fields: Vec<(&'a str, &'a str)>,
    /// The text of `source`, if there is one (the last, as serde_json keeps it).
    pub source: Option<&'a str>,
    /// When `source` is an object: its members other than `resource`.
    pub source_members: Option<Vec<(&'a str, &'a str)>>,
    /// When `source` is an object with an object `resource`: its text, and what
    /// [`canonical_object`] finds in it when it is in serde_json's form.
    pub resource: Option<(&'a str, Option<CanonicalObject<'a>>)>,
}

/// Reads an entry body (a JSON object text) in one pass: its fields, its `source`, and the
/// resource kept in the source, checked for serde_json's form on the way. `None` if the text is
/// not one JSON object or a key (of the body or the source) has an escape.
pub(crate) fn body_parts(text: &str) -> Option<BodyParts<'_>> {
    let mut c = Cursor::new(text);
    let mut parts = BodyParts::default();
    c.ws();
    c.each_member(|c, key, escaped| {
        if escaped {
            return None;
        }
        if key == SOURCE {
            let start = c.i;
            let (members, resource) = if c.peek() == Some(b'{') {
                let (m, r) = source_parts(c)?;
                (Some(m), r)
            } else {
                c.skip_value(1)?;
                (None, None)
            };
            parts.source = Some(c.s.get(start..c.i)?);
            parts.source_members = members;
            parts.resource = resource;
        } else {
            let value = c.skip_value(1)?;
            parts.fields.push((key, value));
        }
        Some(())
    })?;
    c.ws();
    (c.i == c.b.len()).then_some(parts)
}

type SourceParts<'a> = (
    Vec<(&'a str, &'a str)>,
    Option<(&'a str, Option<CanonicalObject<'a>>)>,
);

/// The members of a source object at the cursor, its `resource` apart.
fn source_parts<'a>(c: &mut Cursor<'a>) -> Option<SourceParts<'a>> {
    let mut members = Vec::new();
    let mut resource = None;
    c.each_member(|c, key, escaped| {
        if escaped {
            return None;
        }
        if key == SOURCE_RESOURCE && c.peek() == Some(b'{') {
            let start = c.i;
            let mut found = CanonicalObject::default();
            let canonical = canonical_value(c, 2, Visit::Top, &mut found).is_some();
            let found = if canonical {
                Some(found)
            } else {
                c.i = start;
                c.skip_value(2)?;
                None
            };
            resource = Some((c.s.get(start..c.i)?, found));
        } else {
            let value = c.skip_value(2)?;
            if key == SOURCE_RESOURCE {
                resource = None;
            }
            members.push((key, value));
        }
        Some(())
    })?;
    Some((members, resource))
}

/// What [`canonical_object`] found in an object written as serde_json writes it.
#[derive(Debug, Default)]
pub(crate) struct CanonicalObject<'a> {
    /// The top-level `resourceType`, if it is a string.
    pub resource_type: Option<&'a str>,
    /// The top-level `id`, if it is a string.
    pub id: Option<&'a str>,
    /// The string values of `reference` members of the object and of every object reached from
    /// it through members, or through members holding arrays of objects.
    pub references: Vec<&'a str>,
}

/// Whether `text` is one JSON object exactly as `serde_json::to_string` writes the `Value` it
/// parses to: no white space, keys in order and unique, strings escaped as serde_json escapes
/// them, numbers in serde_json's form. If so, what it holds of [`CanonicalObject`]; `None`
/// otherwise (and also when a string found has an escape, to keep the answers plain text).
pub(crate) fn canonical_object(text: &str) -> Option<CanonicalObject<'_>> {
    if !text.starts_with('{') {
        return None;
    }
    let mut c = Cursor::new(text);
    let mut found = CanonicalObject::default();
    canonical_value(&mut c, 0, Visit::Top, &mut found)?;
    (c.i == c.b.len()).then_some(found)
}

/// How a value was reached, for which objects' `reference` members count.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Visit {
    Top,
    /// A member of a visited object.
    Member,
    /// An item of an array that is a member of a visited object.
    Item,
    /// Not visited.
    No,
}

fn canonical_value<'a>(
    c: &mut Cursor<'a>,
    depth: usize,
    visit: Visit,
    found: &mut CanonicalObject<'a>,
) -> Option<()> {
    if depth > MAX_DEPTH {
        return None;
    }
    match c.peek()? {
        b'{' => {
            c.i += 1;
            let visited = visit != Visit::No;
            if c.eat(b'}').is_some() {
                return Some(());
            }
            let mut prev: Option<&str> = None;
            loop {
                let (key, escaped) = c.string(true)?;
                if escaped || prev.is_some_and(|p| p >= key) {
                    return None;
                }
                prev = Some(key);
                c.eat(b':')?;
                let wanted = visited && (key == "reference" || visit == Visit::Top);
                if wanted && c.peek() == Some(b'"') {
                    let (value, escaped) = c.string(true)?;
                    let kept = matches!(key, "reference" | "resourceType" | "id");
                    if escaped && kept {
                        return None;
                    }
                    match key {
                        "reference" if visited => found.references.push(value),
                        "resourceType" if visit == Visit::Top => found.resource_type = Some(value),
                        "id" if visit == Visit::Top => found.id = Some(value),
                        _ => {}
                    }
                } else {
                    let next = if visited { Visit::Member } else { Visit::No };
                    canonical_value(c, depth + 1, next, found)?;
                }
                if c.eat(b',').is_none() {
                    c.eat(b'}')?;
                    return Some(());
                }
            }
        }
        b'[' => {
            c.i += 1;
            if c.eat(b']').is_some() {
                return Some(());
            }
            let next = if visit == Visit::Member {
                Visit::Item
            } else {
                Visit::No
            };
            loop {
                canonical_value(c, depth + 1, next, found)?;
                if c.eat(b',').is_none() {
                    c.eat(b']')?;
                    return Some(());
                }
            }
        }
        b'"' => c.string(true).map(|_| ()),
        b't' | b'f' | b'n' => c.literal(),
        _ => canonical_number(c.number_token()?),
    }
}

/// Whether serde_json, parsing `token` into a `Value` and writing it, gives `token` back.
fn canonical_number(token: &str) -> Option<()> {
    if token.contains(['.', 'e', 'E']) {
        let f: f64 = serde_json::from_str(token).ok()?;
        let again = serde_json::to_string(&f).ok()?;
        return (again == token).then_some(());
    }
    // Integers: serde_json keeps those that fit u64 (or i64 when negative) as integers, and
    // writes them back as they are, given no leading zeros or `-0`.
    let digits = token.strip_prefix('-').unwrap_or(token);
    let plain = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && token != "-0";
    let fits = if token.starts_with('-') {
        token.parse::<i64>().is_ok()
    } else {
        token.parse::<u64>().is_ok()
    };
    (plain && fits).then_some(())
}

/// Writes compact JSON text (as serde_json writes it) as serde_json's pretty printer would:
/// two spaces of indentation per level, `": "` after keys, empty arrays and objects as `[]` and
/// `{}`.
pub(crate) fn write_pretty(compact: &[u8], out: &mut Vec<u8>) {
    out.reserve(compact.len() + compact.len() / 2);
    let mut depth = 0usize;
    let mut i = 0;
    let newline = |out: &mut Vec<u8>, depth: usize| {
        out.push(b'\n');
        for _ in 0..depth {
            out.extend_from_slice(b"  ");
        }
    };
    while i < compact.len() {
        let c = compact[i];
        match c {
            b'"' => {
                // Copy the string, escapes included.
                let start = i;
                i += 1;
                while i < compact.len() {
                    match compact[i] {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
                i = (i + 1).min(compact.len());
                out.extend_from_slice(&compact[start..i]);
                continue;
            }
            b'{' | b'[' => {
                let close = if c == b'{' { b'}' } else { b']' };
                if compact.get(i + 1) == Some(&close) {
                    out.push(c);
                    out.push(close);
                    i += 2;
                    continue;
                }
                out.push(c);
                depth += 1;
                newline(out, depth);
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                newline(out, depth);
                out.push(c);
            }
            b',' => {
                out.push(b',');
                newline(out, depth);
            }
            b':' => out.extend_from_slice(b": "),
            _ => out.push(c),
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests;
