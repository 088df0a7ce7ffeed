//! The one encoding a signed body may have: canonical DAG-CBOR, exactly as
//! `serde_ipld_dagcbor::to_vec` writes it (which is how every body is signed).
//!
//! A decoder checks a body by decoding it, encoding the value again and comparing the bytes
//! ([`token::decode_body`](crate::grant::token::decode_body) for grants and every other signed
//! body, `Bundle::decode` for a bundle's header). That catches every other encoding of
//! the same value: map keys out of order, integers or lengths longer than they need be, an
//! absent `Option` field, an enum variant given by index, a byte array written as a list.
//!
//! The encoder here writes the same bytes as `serde_ipld_dagcbor` (the tests hold it to that),
//! but into one buffer: a map's entries are written in place and put in canonical order when
//! the map ends. `serde_ipld_dagcbor` gives each entry a buffer of its own, which cost about
//! half of a grant chain's decode. Any value this encoder cannot write is an error, so a body
//! holding one is refused: a value never has two accepted encodings.

use serde::Serialize;
use serde::ser;
use std::fmt;

/// Whether `bytes` is the canonical encoding of `value`.
pub(crate) fn is_encoding_of<T: Serialize + ?Sized>(value: &T, bytes: &[u8]) -> bool {
    let mut enc = Encoder::with_capacity(bytes.len());
    value.serialize(&mut enc).is_ok() && enc.out == bytes
}

/// The canonical encoding of `value`.
#[cfg(test)]
pub(crate) fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Unencodable> {
    let mut enc = Encoder::with_capacity(64);
    value.serialize(&mut enc)?;
    Ok(enc.out)
}

/// A value with no DAG-CBOR encoding (a float that is not finite, an integer beyond 64 bits,
/// a map key that is not text), or a shape this encoder does not write (a CID).
#[derive(Debug)]
pub(crate) struct Unencodable;

impl fmt::Display for Unencodable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value with no canonical DAG-CBOR encoding")
    }
}

impl std::error::Error for Unencodable {}

impl ser::Error for Unencodable {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        Unencodable
    }
}

/// Writes a head: the major type and a count or value in its shortest form.
fn head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    if n < 24 {
        out.push(m | n as u8);
    } else if let Ok(n) = u8::try_from(n) {
        out.extend_from_slice(&[m | 24, n]);
    } else if let Ok(n) = u16::try_from(n) {
        out.push(m | 25);
        out.extend_from_slice(&n.to_be_bytes());
    } else if let Ok(n) = u32::try_from(n) {
        out.push(m | 26);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

// CBOR major types.
const UNSIGNED: u8 = 0;
const NEGATIVE: u8 = 1;
const BYTES: u8 = 2;
const TEXT: u8 = 3;
const ARRAY: u8 = 4;
const MAP: u8 = 5;
const FALSE: u8 = 0xf4;
const TRUE: u8 = 0xf5;
const NULL: u8 = 0xf6;
const FLOAT64: u8 = 0xfb;

struct Encoder {
    out: Vec<u8>,
    /// The entries of the maps being written, innermost map's last: each entry's start and end
    /// in `out`.
    spans: Vec<(usize, usize)>,
    /// Where a map's entries are copied to while they are put in order.
    scratch: Vec<u8>,
}

impl Encoder {
    fn with_capacity(n: usize) -> Self {
        Encoder {
            out: Vec::with_capacity(n),
            spans: Vec::new(),
            scratch: Vec::new(),
        }
    }

    fn head(&mut self, major: u8, n: u64) {
        head(&mut self.out, major, n);
    }

    fn signed(&mut self, v: i64) {
        match u64::try_from(v) {
            Ok(u) => self.head(UNSIGNED, u),
            // -1 - v, in range for every negative i64.
            Err(_) => self.head(NEGATIVE, !(v as u64)),
        }
    }

    fn text(&mut self, s: &str) {
        self.head(TEXT, s.len() as u64);
        self.out.extend_from_slice(s.as_bytes());
    }

    /// Starts a map or struct whose entries follow.
    fn entries(&mut self, count_at_end: bool) -> Entries<'_> {
        Entries {
            base: self.spans.len(),
            start: self.out.len(),
            key_start: None,
            count_at_end,
            enc: self,
        }
    }
}

/// A map's or struct's entries, written in the order given and sorted when it ends: by their
/// encoded bytes, as `serde_ipld_dagcbor` sorts them (keys are text, so this is by key length
/// and then by key).
struct Entries<'a> {
    enc: &'a mut Encoder,
    /// `enc.spans.len()` when the map started.
    base: usize,
    /// Where the first entry starts in `enc.out`.
    start: usize,
    /// Where the entry whose key has been written (and not yet its value) starts.
    key_start: Option<usize>,
    /// A map's head is written when it ends, with the number of entries; a struct's is
    /// written before its fields.
    count_at_end: bool,
}

impl Entries<'_> {
    fn entry(&mut self, key: &str, value: &(impl Serialize + ?Sized)) -> Result<(), Unencodable> {
        let start = self.enc.out.len();
        self.enc.text(key);
        value.serialize(&mut *self.enc)?;
        self.enc.spans.push((start, self.enc.out.len()));
        Ok(())
    }

    fn finish(self) {
        let Encoder {
            out,
            spans,
            scratch,
        } = self.enc;
        let start = self.start;
        let mine = &mut spans[self.base..];
        let count = mine.len() as u64;
        let in_order = mine
            .windows(2)
            .all(|w| out[w[0].0..w[0].1] <= out[w[1].0..w[1].1]);
        if !in_order || self.count_at_end {
            scratch.clear();
            scratch.extend_from_slice(&out[start..]);
            let at = |&(a, b): &(usize, usize)| (a - start)..(b - start);
            mine.sort_unstable_by(|x, y| scratch[at(x)].cmp(&scratch[at(y)]));
            out.truncate(start);
            if self.count_at_end {
                head(out, MAP, count);
            }
            for span in mine.iter() {
                out.extend_from_slice(&scratch[at(span)]);
            }
        }
        spans.truncate(self.base);
    }
}

impl ser::SerializeMap for Entries<'_> {
    type Ok = ();
    type Error = Unencodable;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Unencodable> {
        let start = self.enc.out.len();
        key.serialize(&mut *self.enc)?;
        // DAG-CBOR map keys are text.
        if self.enc.out.get(start).map(|b| b >> 5) != Some(TEXT) {
            return Err(Unencodable);
        }
        self.key_start = Some(start);
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unencodable> {
        let start = self.key_start.take().ok_or(Unencodable)?;
        value.serialize(&mut *self.enc)?;
        self.enc.spans.push((start, self.enc.out.len()));
        Ok(())
    }

    fn end(self) -> Result<(), Unencodable> {
        self.finish();
        Ok(())
    }
}

macro_rules! fields {
    ($($trait:ident),*) => {$(
        impl ser::$trait for Entries<'_> {
            type Ok = ();
            type Error = Unencodable;

            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), Unencodable> {
                self.entry(key, value)
            }

            fn end(self) -> Result<(), Unencodable> {
                self.finish();
                Ok(())
            }
        }
    )*};
}

fields!(SerializeStruct, SerializeStructVariant);

/// A list's elements. A list of unknown length gets its head, with the number of elements,
/// when it ends; every other list's head is written before its elements.
struct Elements<'a> {
    enc: &'a mut Encoder,
    /// Where the first element starts in `enc.out`.
    start: usize,
    /// The elements so far, for a list of unknown length.
    counted: Option<u64>,
}

impl Elements<'_> {
    fn element(&mut self, value: &(impl Serialize + ?Sized)) -> Result<(), Unencodable> {
        if let Some(n) = self.counted.as_mut() {
            *n += 1;
        }
        value.serialize(&mut *self.enc)
    }

    fn finish(self) -> Result<(), Unencodable> {
        if let Some(n) = self.counted {
            let enc = self.enc;
            enc.scratch.clear();
            enc.scratch.extend_from_slice(&enc.out[self.start..]);
            enc.out.truncate(self.start);
            enc.head(ARRAY, n);
            enc.out.extend_from_slice(&enc.scratch);
        }
        Ok(())
    }
}

macro_rules! elements {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for Elements<'_> {
            type Ok = ();
            type Error = Unencodable;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unencodable> {
                self.element(value)
            }

            fn end(self) -> Result<(), Unencodable> {
                self.finish()
            }
        }
    )*};
}

elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl<'a> ser::Serializer for &'a mut Encoder {
    type Ok = ();
    type Error = Unencodable;
    type SerializeSeq = Elements<'a>;
    type SerializeTuple = Elements<'a>;
    type SerializeTupleStruct = Elements<'a>;
    type SerializeTupleVariant = Elements<'a>;
    type SerializeMap = Entries<'a>;
    type SerializeStruct = Entries<'a>;
    type SerializeStructVariant = Entries<'a>;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn serialize_bool(self, v: bool) -> Result<(), Unencodable> {
        self.out.push(if v { TRUE } else { FALSE });
        Ok(())
    }

    fn serialize_i8(self, v: i8) -> Result<(), Unencodable> {
        self.serialize_i64(v.into())
    }

    fn serialize_i16(self, v: i16) -> Result<(), Unencodable> {
        self.serialize_i64(v.into())
    }

    fn serialize_i32(self, v: i32) -> Result<(), Unencodable> {
        self.serialize_i64(v.into())
    }

    fn serialize_i64(self, v: i64) -> Result<(), Unencodable> {
        self.signed(v);
        Ok(())
    }

    fn serialize_i128(self, v: i128) -> Result<(), Unencodable> {
        if let Ok(u) = u64::try_from(v) {
            self.head(UNSIGNED, u);
        } else {
            // -1 - v must fit 64 bits.
            let n = u64::try_from(-1 - v).map_err(|_| Unencodable)?;
            self.head(NEGATIVE, n);
        }
        Ok(())
    }

    fn serialize_u8(self, v: u8) -> Result<(), Unencodable> {
        self.serialize_u64(v.into())
    }

    fn serialize_u16(self, v: u16) -> Result<(), Unencodable> {
        self.serialize_u64(v.into())
    }

    fn serialize_u32(self, v: u32) -> Result<(), Unencodable> {
        self.serialize_u64(v.into())
    }

    fn serialize_u64(self, v: u64) -> Result<(), Unencodable> {
        self.head(UNSIGNED, v);
        Ok(())
    }

    fn serialize_u128(self, v: u128) -> Result<(), Unencodable> {
        self.serialize_u64(u64::try_from(v).map_err(|_| Unencodable)?)
    }

    fn serialize_f32(self, v: f32) -> Result<(), Unencodable> {
        self.serialize_f64(v.into())
    }

    fn serialize_f64(self, v: f64) -> Result<(), Unencodable> {
        if !v.is_finite() {
            return Err(Unencodable);
        }
        // Negative zero is written as zero.
        let v = if v == 0.0 { 0.0f64 } else { v };
        self.out.push(FLOAT64);
        self.out.extend_from_slice(&v.to_be_bytes());
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<(), Unencodable> {
        self.text(v.encode_utf8(&mut [0; 4]));
        Ok(())
    }

    fn serialize_str(self, v: &str) -> Result<(), Unencodable> {
        self.text(v);
        Ok(())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), Unencodable> {
        self.head(BYTES, v.len() as u64);
        self.out.extend_from_slice(v);
        Ok(())
    }

    fn serialize_none(self) -> Result<(), Unencodable> {
        self.out.push(NULL);
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Unencodable> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Unencodable> {
        self.out.push(NULL);
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Unencodable> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Unencodable> {
        self.text(variant);
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<(), Unencodable> {
        // serde's private names (such as the one `serde_ipld_dagcbor` gives a CID, which it
        // writes as a tag) start with `$`: refused rather than written some other way.
        if name.starts_with('$') {
            return Err(Unencodable);
        }
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Unencodable> {
        self.head(MAP, 1);
        self.text(variant);
        value.serialize(self)
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Elements<'a>, Unencodable> {
        match len {
            Some(n) => self.serialize_tuple(n),
            None => Ok(Elements {
                start: self.out.len(),
                counted: Some(0),
                enc: self,
            }),
        }
    }

    fn serialize_tuple(self, len: usize) -> Result<Elements<'a>, Unencodable> {
        self.head(ARRAY, len as u64);
        Ok(Elements {
            start: self.out.len(),
            counted: None,
            enc: self,
        })
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Elements<'a>, Unencodable> {
        self.serialize_tuple(len)
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Elements<'a>, Unencodable> {
        self.head(MAP, 1);
        self.text(variant);
        self.serialize_tuple(len)
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Entries<'a>, Unencodable> {
        Ok(self.entries(true))
    }

    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<Entries<'a>, Unencodable> {
        self.head(MAP, len as u64);
        Ok(self.entries(false))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Entries<'a>, Unencodable> {
        self.head(MAP, 1);
        self.text(variant);
        self.head(MAP, len as u64);
        Ok(self.entries(false))
    }
}
