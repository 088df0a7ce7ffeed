//! The laws section documents obey when merged.

use crate::record::items::string_items;
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ROOT};
use proptest::prelude::*;

/// A section document as the engine writes it: each change puts new, never-reused keys.
fn doc_with(actor: u8, items: &[(u8, u8)]) -> AutoCommit {
    let mut d = AutoCommit::new().with_actor(automerge::ActorId::from([actor; 32]));
    for (i, (k, v)) in items.iter().enumerate() {
        d.put(ROOT, format!("e/{actor}-{i}-{k}"), format!("value {v}"))
            .unwrap();
        d.commit();
    }
    d
}

fn items(d: &AutoCommit) -> Vec<(String, String)> {
    string_items(d, "e/")
}

fn merged(order: &[&AutoCommit]) -> AutoCommit {
    let mut acc = AutoCommit::new();
    for d in order {
        let mut other = (*d).clone();
        acc.merge(&mut other).unwrap();
    }
    acc
}

proptest! {
    /// Merging section documents commutes, associates and is idempotent, and loses nothing.
    #[test]
    fn section_merge_laws(
        a in proptest::collection::vec(any::<(u8, u8)>(), 0..6),
        b in proptest::collection::vec(any::<(u8, u8)>(), 0..6),
        c in proptest::collection::vec(any::<(u8, u8)>(), 0..6),
    ) {
        let (da, db, dc) = (doc_with(1, &a), doc_with(2, &b), doc_with(3, &c));
        let abc = items(&merged(&[&da, &db, &dc]));
        prop_assert_eq!(&abc, &items(&merged(&[&dc, &db, &da])));
        prop_assert_eq!(&abc, &items(&merged(&[&db, &da, &dc])));
        // (a ∪ b) ∪ c == a ∪ (b ∪ c)
        let ab = merged(&[&da, &db]);
        let bc = merged(&[&db, &dc]);
        prop_assert_eq!(&abc, &items(&merged(&[&ab, &dc])));
        prop_assert_eq!(&abc, &items(&merged(&[&da, &bc])));
        // Idempotent: merging again changes nothing.
        let twice = merged(&[&da, &db, &dc, &da, &db, &dc]);
        prop_assert_eq!(&abc, &items(&twice));
        prop_assert_eq!(abc.len(), a.len() + b.len() + c.len());
    }

    /// Applying the same change chunks in any order (as bundles arrive) gives the same view.
    #[test]
    fn incremental_loads_converge(a in proptest::collection::vec(any::<(u8, u8)>(), 1..6), rev in any::<bool>()) {
        let mut src = doc_with(4, &a);
        let chunks: Vec<Vec<u8>> = src.get_changes(&[]).iter().map(|c| c.raw_bytes().to_vec()).collect();
        let mut d = AutoCommit::new();
        let mut order = chunks.clone();
        if rev { order.reverse(); }
        for ch in &order {
            d.load_incremental(ch).unwrap();
        }
        prop_assert_eq!(items(&d), items(&src));
    }
}
