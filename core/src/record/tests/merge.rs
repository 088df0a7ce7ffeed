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

proptest! {
    /// Who wrote each entry, as read in one pass (`entry_writes`), is what a lookup of each key
    /// gives, also where two writers put the same key concurrently (the lookup's winner).
    #[test]
    fn entry_writers_read_in_one_pass_are_those_of_each_key(
        writes in proptest::collection::vec((1u8..4, 0usize..6, any::<u8>()), 0..24),
    ) {
        use crate::ids::EntryId;
        use crate::record::views::entry_writes;
        use crate::test_utils::TestRng;
        use automerge::ReadDoc;
        // A small pool of entry ids, so that writers meet on the same keys.
        let ids: Vec<EntryId> = (0..6).map(|s| EntryId::generate(&mut TestRng::new(s))).collect();
        let mut docs: Vec<AutoCommit> = (1u8..4)
            .map(|a| AutoCommit::new().with_actor(automerge::ActorId::from([a; 32])))
            .collect();
        for (actor, id, v) in &writes {
            let d = &mut docs[usize::from(*actor) - 1];
            d.put(ROOT, format!("e/{}", ids[*id]), format!("value {v}")).unwrap();
            d.commit();
        }
        let mut m = merged(&docs.iter().collect::<Vec<_>>());
        // Keys that are not entries are left out.
        m.put(ROOT, "d/not-an-entry", "x").unwrap();
        m.put(ROOT, "e/not-an-id", "x").unwrap();
        m.commit();
        let by_lookup: Vec<(EntryId, automerge::ObjId)> = m
            .keys(ROOT)
            .filter_map(|k| {
                let id = k.strip_prefix("e/")?.parse::<EntryId>().ok()?;
                let (_, exid) = m.get(ROOT, &k).ok().flatten()?;
                Some((id, exid))
            })
            .collect();
        prop_assert_eq!(entry_writes(&m), by_lookup);
    }
}
