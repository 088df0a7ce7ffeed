//! The canonical encoding of signed bodies: the encoder that checks it writes what
//! `serde_ipld_dagcbor` writes for every shape serde has, and every other encoding of a body
//! is refused.

use super::*;
use crate::canonical;
use crate::grant::token::{TokenError, decode_body};
use serde::Serialize;
use serde::ser::Serializer;
use serde_bytes::ByteBuf;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Serialize)]
struct Unit;

#[derive(Clone, Debug, Serialize)]
enum Variants {
    Plain,
    Newtype(u16),
    Tuple(i8, String),
    Fields { zebra: bool, a: Option<u8> },
}

/// A list and a map whose lengths serde does not know in advance.
#[derive(Clone, Debug)]
struct Unsized(Vec<u32>);

impl Serialize for Unsized {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&Filtered(&self.0))?;
        t.serialize_element(&FilteredMap(&self.0))?;
        t.end()
    }
}

struct Filtered<'a>(&'a [u32]);

impl Serialize for Filtered<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().filter(|n| *n % 3 != 0))
    }
}

struct FilteredMap<'a>(&'a [u32]);

impl Serialize for FilteredMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(
            self.0
                .iter()
                .filter(|n| *n % 2 == 0)
                .map(|n| (n.to_string(), *n)),
        )
    }
}

/// Every shape serde has, with field names whose canonical order is not their order here.
#[derive(Clone, Debug, Serialize)]
struct Shapes {
    longest_name_of_all: bool,
    b: i8,
    signed: i64,
    unsigned: u64,
    wide: i128,
    uwide: u128,
    float: f64,
    letter: char,
    text: String,
    bytes: ByteBuf,
    maybe: Option<u32>,
    unit: (),
    unit_struct: Unit,
    variants: Vec<Variants>,
    list: Vec<u16>,
    map: BTreeMap<String, i32>,
    pair: (u8, String),
    unsized_: Unsized,
    nested: Option<Box<Shapes>>,
}

fn variants() -> impl Strategy<Value = Variants> {
    prop_oneof![
        Just(Variants::Plain),
        any::<u16>().prop_map(Variants::Newtype),
        (any::<i8>(), ".{0,3}").prop_map(|(n, s)| Variants::Tuple(n, s)),
        (any::<bool>(), any::<Option<u8>>()).prop_map(|(zebra, a)| Variants::Fields { zebra, a }),
    ]
}

fn shapes() -> impl Strategy<Value = Shapes> {
    let ints = (
        any::<i8>(),
        any::<i64>(),
        any::<u64>(),
        -(u64::MAX as i128 + 1)..=(u64::MAX as i128),
        0..=(u64::MAX as u128),
        -1e300f64..1e300,
    );
    let texts = (
        any::<char>(),
        ".{0,300}",
        proptest::collection::vec(any::<u8>(), 0..300),
        any::<Option<u32>>(),
    );
    let lists = (
        proptest::collection::vec(variants(), 0..4),
        proptest::collection::vec(any::<u16>(), 0..30),
        proptest::collection::btree_map("[a-z]{0,4}", any::<i32>(), 0..6),
        (any::<u8>(), "[a-z]{0,30}"),
        proptest::collection::vec(any::<u32>(), 0..30),
    );
    (any::<bool>(), ints, texts, lists).prop_map(|(flag, ints, texts, lists)| Shapes {
        longest_name_of_all: flag,
        b: ints.0,
        signed: ints.1,
        unsigned: ints.2,
        wide: ints.3,
        uwide: ints.4,
        float: ints.5,
        letter: texts.0,
        text: texts.1,
        bytes: ByteBuf::from(texts.2),
        maybe: texts.3,
        unit: (),
        unit_struct: Unit,
        variants: lists.0,
        list: lists.1,
        map: lists.2,
        pair: lists.3,
        unsized_: Unsized(lists.4),
        nested: None,
    })
}

proptest! {
    #[test]
    fn the_encoder_writes_what_serde_ipld_dagcbor_writes(
        outer in shapes(),
        inner in proptest::option::of(shapes()),
    ) {
        let value = Shapes { nested: inner.map(Box::new), ..outer };
        let theirs = serde_ipld_dagcbor::to_vec(&value).unwrap();
        prop_assert_eq!(canonical::to_vec(&value).unwrap(), theirs.clone());
        prop_assert!(canonical::is_encoding_of(&value, &theirs));
    }
}

#[test]
fn values_without_a_dag_cbor_encoding_are_refused_as_serde_ipld_dagcbor_refuses_them() {
    assert!(canonical::to_vec(&f64::NAN).is_err());
    assert!(canonical::to_vec(&f64::INFINITY).is_err());
    assert!(canonical::to_vec(&(u64::MAX as u128 + 1)).is_err());
    assert!(canonical::to_vec(&-(u64::MAX as i128 + 2)).is_err());
    let numeric_keys: BTreeMap<u8, u8> = [(1, 2)].into();
    assert!(canonical::to_vec(&numeric_keys).is_err());
    assert!(serde_ipld_dagcbor::to_vec(&numeric_keys).is_err());
    // Negative zero is written as zero, as the DAG-CBOR rules say.
    assert_eq!(
        canonical::to_vec(&-0.0f64).unwrap(),
        serde_ipld_dagcbor::to_vec(&-0.0f64).unwrap()
    );
}

/// A root grant without keys, and its signed body's bytes.
fn body_bytes() -> Vec<u8> {
    let mut w = world(41);
    let g = Grant::issue_root(
        &w.patient,
        spec(w.gp.peer(), "notes", Ability::Read, 30),
        &[],
        &mut w.rng,
    )
    .unwrap();
    assert_eq!(canonical::to_vec(&g.body).unwrap(), g.envelope.body);
    assert!(decode_body::<GrantBody>(&g.envelope.body).is_ok());
    g.envelope.body
}

/// `bytes` with `from` (which must occur once) replaced by `to`.
fn replaced(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at: Vec<usize> = (0..bytes.len())
        .filter(|&i| bytes[i..].starts_with(from))
        .collect();
    assert_eq!(at.len(), 1, "the pattern occurs once in the body");
    [&bytes[..at[0]], to, &bytes[at[0] + from.len()..]].concat()
}

fn refused(bytes: &[u8]) -> bool {
    matches!(
        decode_body::<GrantBody>(bytes),
        Err(TokenError::Malformed(_))
    )
}

#[test]
fn every_other_encoding_of_a_signed_body_is_refused() {
    let body = body_bytes();
    let head = body[0];
    assert_eq!(head >> 5, 5, "a body is a map");
    // The canonical order puts the shortest keys first: `v` (1), then `keys` (empty here).
    let v = [0x61, b'v', 0x01];
    let keys = [0x64, b'k', b'e', b'y', b's', 0x80];
    assert_eq!(&body[1..4], &v);
    assert_eq!(&body[4..10], &keys);

    // The same entries in another order.
    let swapped = [&[head][..], &keys, &v, &body[10..]].concat();
    assert!(refused(&swapped), "entries out of order");
    // A number longer than it need be.
    let long_number = [&[head][..], &[0x61, b'v', 0x18, 0x01], &body[4..]].concat();
    assert!(refused(&long_number), "a number in two bytes");
    // An absent `Option` field, which serde takes as `None` (`window` is null in the body).
    let window = [&[0x66][..], b"window", &[0xf6]].concat();
    let without = replaced(&body, &window, &[]);
    let without = [&[head - 1][..], &without[1..]].concat();
    assert!(refused(&without), "an absent field");
    // A byte string written as a list of numbers (the nonce).
    let nonce_at = (0..body.len())
        .find(|&i| body[i..].starts_with(&[0x65, b'n', b'o', b'n', b'c', b'e', 0x50]))
        .unwrap();
    let nonce = &body[nonce_at + 7..nonce_at + 23];
    let mut as_list = vec![0x90];
    for b in nonce {
        as_list.extend(canonical::to_vec(b).unwrap());
    }
    let listed = [&body[..nonce_at + 6], &as_list[..], &body[nonce_at + 23..]].concat();
    assert!(refused(&listed), "a byte string as a list");
    // An enum variant by its index instead of its name.
    let by_index = replaced(&body, b"\x6bdirect-care", &[0x00]);
    assert!(refused(&by_index), "a variant by index");
    // A field the body does not have.
    let extra = [&[head + 1][..], &[0x61, b'x', 0x00], &body[1..]].concat();
    assert!(refused(&extra), "an unknown field");
}
