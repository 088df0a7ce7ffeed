//! This node's audit journal, collected into the record's audit log on a patient's device,
//! and the mark of how far the log holds it.

use crate::audit::Action;
use crate::ledger::Key;
use crate::record::Vault;
use crate::test_utils::{TEST_NOW, TestRng, patient_record};

/// Collecting the journal makes one durable commit, the audit log's change; the mark of what
/// it took follows it visible, durable at the store's next flush, without a flush of its own
/// (made under the node's lock, an edit would wait for it). A mark lost to a crash before that
/// flush costs nothing but a second collection, which adds nothing twice.
#[test]
fn the_journal_collected_is_marked_without_a_flush_of_its_own_and_taken_once() {
    let mut rng = TestRng::new(5);
    let store = super::Counting::default();
    let v = Vault::new(&store);
    let (patient, rid) = patient_record(&v, "P", TEST_NOW, &mut rng);
    let read = || Action::Read {
        sections: Vec::new(),
        authority: None,
    };
    let collect = |rng: &mut TestRng| {
        let mut rec = v.open_record(&patient, &rid).unwrap();
        rec.collect_journal(TEST_NOW, rng).unwrap()
    };
    // The first collection also starts the audit log.
    v.journal_many(&patient, vec![(rid, read())], TEST_NOW)
        .unwrap();
    assert_eq!(collect(&mut rng), 1);

    v.journal_many(&patient, vec![(rid, read()), (rid, read())], TEST_NOW)
        .unwrap();
    let (commits, visible) = (store.commits.get(), store.visible.get());
    assert_eq!(collect(&mut rng), 2);
    assert_eq!(store.commits.get() - commits, 1, "the audit log's change");
    assert_eq!(store.visible.get() - visible, 1, "the mark");
    assert_eq!(v.journal_sent(&rid).unwrap(), 3);
    let held = v.open_record(&patient, &rid).unwrap().audit_stored().len();

    // The mark lost: collected again, nothing is added twice, and the mark is back.
    v.put_local(&Key::JournalSent(&rid).text(), &0u64.to_be_bytes())
        .unwrap();
    assert_eq!(collect(&mut rng), 0);
    assert_eq!(
        v.open_record(&patient, &rid).unwrap().audit_stored().len(),
        held
    );
    assert_eq!(v.journal_sent(&rid).unwrap(), 3);
}
