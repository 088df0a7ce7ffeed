//! Hostile input at a relay: forged, misaddressed and replayed lists, a full quota, a full
//! relay, tampered bundles and padding, oversize messages.

use super::*;

#[test]
fn a_full_relay_takes_on_no_new_record_and_its_count_follows_what_it_keeps() {
    let f = fixture(8);
    let rid = f.rid;
    let count = || f.relay.vault.local_count(&HOSTED_COUNT).unwrap();
    // No room: the patient's node is refused as if the relay did not know the record.
    let full = RelayLimits {
        max_records: 0,
        ..RelayLimits::default()
    };
    refused_nothing_here(exchange(&f.patient, &f.relay, &full, rid, at(10)));
    let server = Server::new(&f.relay.vault, &f.relay.id, &full);
    assert!(server.all_hosted().unwrap().is_empty());
    assert!(f.relay.vault.held_sections(&rid).unwrap().is_empty());
    assert_eq!(count(), 0);
    // Room for one: taken on, counted once however often it is supplied and synced.
    let one = RelayLimits {
        max_records: 1,
        ..RelayLimits::default()
    };
    exchange(&f.patient, &f.relay, &one, rid, at(11)).unwrap();
    exchange(&f.gp, &f.relay, &one, rid, at(12)).unwrap();
    exchange(&f.patient, &f.relay, &one, rid, at(13)).unwrap();
    assert_eq!(count(), 1);
    assert_eq!(f.gp.texts(&rid, "notes"), vec![NOTE]);
    // Now full, it still serves the record it keeps.
    exchange(&f.reader, &f.relay, &one, rid, at(14)).unwrap();
    assert_eq!(f.relay.vault.count_local("hosted/").unwrap(), 1);
}

/// Another patient, with a record of one note that uses the fixture's relay.
fn another_patient(f: &mut Fixture, name: &str) -> (Node, RecordId) {
    let p = Node::new(Role::Patient, name, &mut f.rng);
    let rid = p
        .vault
        .create_record(&p.id, NewRecord::default(), TEST_NOW, &mut f.rng)
        .unwrap();
    p.add(&rid, "notes", "A note", at(1), &mut f.rng);
    use_relay(&p, &rid, &f.relay, &mut f.rng);
    (p, rid)
}

/// Patients' nodes supplying their records at once to a relay with one place left: the room
/// each request is checked for before the relay's work on it is judged again at its commit, so
/// one record is taken on and the others refused, never two.
#[test]
fn records_racing_for_a_relays_last_place_do_not_both_get_it() {
    const RACERS: usize = 6;
    for round in 0..6 {
        let mut f = fixture(40 + round);
        let mut others = Vec::new();
        for i in 1..RACERS {
            others.push(another_patient(&mut f, &format!("Patient {i}")));
        }
        let racers: Vec<(&Node, RecordId)> = std::iter::once((&f.patient, f.rid))
            .chain(others.iter().map(|(p, rid)| (p, *rid)))
            .collect();
        let one = RelayLimits {
            max_records: 1,
            ..RelayLimits::default()
        };
        // Each node's first request (its list, its wraps, what it holds), made beforehand.
        let relay_peer = f.relay.id.peer();
        let requests: Vec<_> = racers
            .iter()
            .map(|(p, rid)| {
                p.peer()
                    .relay_start(*rid, relay_peer, at(10), &mut TestRng::new(99))
                    .unwrap()
            })
            .collect();
        let start = std::sync::Barrier::new(RACERS);
        let taken: Vec<bool> = std::thread::scope(|s| {
            let answers: Vec<_> = racers
                .iter()
                .zip(requests)
                .map(|(&(p, _), req)| {
                    let (relay, start, one) = (&f.relay, &start, &one);
                    s.spawn(move || {
                        start.wait();
                        ask(relay, one, p, req, at(10)).refused.is_none()
                    })
                })
                .collect();
            answers.into_iter().map(|a| a.join().unwrap()).collect()
        });
        let kept = Server::new(&f.relay.vault, &f.relay.id, &one)
            .readable_hosted()
            .unwrap();
        assert_eq!(kept.len(), 1, "round {round}");
        assert_eq!(f.relay.vault.local_count(&HOSTED_COUNT).unwrap(), 1);
        // The one taken on is the one kept; those refused left nothing.
        let winners: Vec<RecordId> = racers
            .iter()
            .zip(&taken)
            .filter(|(_, took)| **took)
            .map(|((_, rid), _)| *rid)
            .collect();
        assert_eq!(winners, vec![kept[0].1.record], "round {round}");
    }
}

#[test]
fn forged_misaddressed_and_replayed_access_lists_are_not_accepted() {
    let mut f = fixture(6);
    let limits = RelayLimits::default();
    let rid = f.rid;
    let relay = f.relay.id.peer();
    exchange(&f.patient, &f.relay, &limits, rid, at(10)).unwrap();
    let first = f.hosted();
    let list_now = |f: &Fixture, relay: &hearth_core::ids::PeerKey, t: Timestamp| {
        let rec = f.patient.vault.open_record(&f.patient.id, &f.rid).unwrap();
        f.patient.peer().relay_access(&rec, relay, t).unwrap()
    };

    // The GP forges a newer list naming itself a device, signed by its own key.
    let genuine = list_now(&f, &relay, at(11));
    let mut list: AccessList = serde_ipld_dagcbor::from_slice(&genuine.body).unwrap();
    let gp = f.gp.id.peer();
    let entry = list.entries.iter_mut().find(|e| e.peer == gp).unwrap();
    entry.device = true;
    list.version += 1_000_000;
    let body = serde_ipld_dagcbor::to_vec(&list).unwrap();
    let sig = crypto::sign(f.gp.id.device_key(), Domain::RelayAccess, &[&body]);
    let forged = SignedAccess {
        body: ByteBuf::from(body),
        sig: ByteArray::new(sig),
    };
    assert_eq!(
        SignedAccess::open(&forged.to_bytes(), &relay, at(11)).unwrap_err(),
        AccessError::BadSignature
    );
    for from in [&f.gp, &f.patient] {
        let mut req = from
            .peer()
            .relay_start(rid, relay, at(11), &mut TestRng::new(99))
            .unwrap();
        req.access = Some(ByteBuf::from(forged.to_bytes()));
        let resp = ask(&f.relay, &limits, from, req, at(11));
        assert!(resp.refused.is_none());
        let now = f.hosted();
        assert_eq!((now.version, &now.access), (first.version, &first.access));
    }
    // The GP is still only a grantee: it gets the list back and only key wraps addressed to
    // it (never the recovery key's), and cannot write medications.
    let req =
        f.gp.peer()
            .relay_start(rid, relay, at(11), &mut TestRng::new(99))
            .unwrap();
    let resp = ask(&f.relay, &limits, &f.gp, req, at(11));
    let gp_key = f.gp.id.agreement_public();
    assert!(resp.access.is_some());
    assert!(
        resp.wraps
            .iter()
            .all(|w| w.recipient.into_array() == gp_key)
    );
    assert!(resp.have.iter().all(|h| h.section == f.notes()));

    // A genuine list for another relay (the patient uses two).
    let other = Node::new(Role::Relay, "Other relay", &mut f.rng);
    use_relay(&f.patient, &rid, &other, &mut f.rng);
    let elsewhere = list_now(&f, &other.id.peer(), at(12));
    assert_eq!(
        SignedAccess::open(&elsewhere.to_bytes(), &relay, at(12)).unwrap_err(),
        AccessError::Misaddressed
    );
    assert!(SignedAccess::open(&elsewhere.to_bytes(), &other.id.peer(), at(12)).is_ok());
    let mut req = f
        .patient
        .peer()
        .relay_start(rid, relay, at(12), &mut TestRng::new(99))
        .unwrap();
    req.access = Some(ByteBuf::from(elsewhere.to_bytes()));
    ask(&f.relay, &limits, &f.patient, req, at(12));
    assert_eq!(f.hosted().version, first.version);
    assert_eq!(f.hosted().access, first.access);

    // The patient revokes the GP and supplies a newer list; the older one, replayed, loses.
    f.revoke_gp(at(20));
    exchange(&f.patient, &f.relay, &limits, rid, at(21)).unwrap();
    let second = f.hosted();
    assert!(second.version > first.version);
    refused_nothing_here(exchange(&f.gp, &f.relay, &limits, rid, at(22)));
    for from in [&f.patient, &f.gp] {
        let mut req = from
            .peer()
            .relay_start(rid, relay, at(23), &mut TestRng::new(99))
            .unwrap();
        req.access = Some(first.access.clone());
        ask(&f.relay, &limits, from, req, at(23));
        assert_eq!(f.hosted().version, second.version);
        assert_eq!(f.hosted().access, second.access);
    }
    refused_nothing_here(exchange(&f.gp, &f.relay, &limits, rid, at(24)));
    // And the same list again (an equal version) is not "newer" either.
    let mut req = f
        .patient
        .peer()
        .relay_start(rid, relay, at(25), &mut TestRng::new(99))
        .unwrap();
    req.access = Some(second.access.clone());
    let resp = ask(&f.relay, &limits, &f.patient, req, at(25));
    assert!(resp.refused.is_none());
    assert_eq!(f.hosted().updated, second.updated);
}

/// A patient's node signs its list afresh at every round. When the list says what the kept one
/// says, the relay notes only the newer version and time (`hosted-supplied/`), and keeps the
/// list and wraps it has; that version still decides which lists are newer, so a list signed
/// in between, saying something else, is not adopted when replayed.
#[test]
fn a_list_signed_afresh_saying_the_same_moves_only_the_version_and_one_signed_between_loses() {
    let mut f = fixture(9);
    let rid = f.rid;
    let limits = RelayLimits::default();
    let relay = f.relay.id.peer();
    let id = f.blinded().to_string();
    let item = |f: &Fixture, kind: &str| f.relay.vault.get_local(&format!("{kind}/{id}")).unwrap();
    let request = |f: &Fixture, t: i64| {
        f.patient
            .peer()
            .relay_start(rid, relay, at(t), &mut TestRng::new(99))
            .unwrap()
    };
    let answer = |f: &Fixture, req: StoreRequest, t: i64| {
        Server::new(&f.relay.vault, &f.relay.id, &limits)
            .answer(f.patient.id.peer(), req, at(t), &mut TestRng::new(77))
            .unwrap()
    };
    exchange(&f.patient, &f.relay, &limits, rid, at(10)).unwrap();
    let first = f.hosted();
    let first_item = item(&f, "hosted");

    // The same list, signed at 12: not "supplied" (nothing new for the relay to act on), the
    // record's item not written again, the newer version and time noted on their own.
    let req = request(&f, 12);
    let version = AccessList::open_kept(req.access.as_ref().unwrap(), &rid)
        .unwrap()
        .version;
    assert!(version > first.version);
    let (resp, served) = answer(&f, req, 12);
    assert!(resp.refused.is_none() && !served.supplied, "{served:?}");
    assert_eq!(
        item(&f, "hosted"),
        first_item,
        "the record's item was written again"
    );
    let now = f.hosted();
    assert_eq!((now.version, now.updated), (version, at(12)));
    assert_eq!(now.access, first.access);
    assert!(item(&f, "hosted-supplied").is_some());
    let all = Server::new(&f.relay.vault, &f.relay.id, &limits)
        .readable_hosted()
        .unwrap();
    assert_eq!((all[0].1.version, all[0].1.updated), (version, at(12)));

    // A kept list whose signature no longer checks (a damaged store) is not taken as saying
    // anything: the next list, though it says the same, is written in its place.
    let mut damaged = f.hosted();
    let mut signed: SignedAccess = serde_ipld_dagcbor::from_slice(&damaged.access).unwrap();
    signed.sig = ByteArray::new([7; 64]);
    damaged.access = serde_ipld_dagcbor::to_vec(&signed).unwrap().into();
    f.relay
        .vault
        .put_local(
            &format!("hosted/{id}"),
            &serde_ipld_dagcbor::to_vec(&damaged).unwrap(),
        )
        .unwrap();
    let req = request(&f, 13);
    let fresh = req.access.clone().unwrap();
    let (resp, served) = answer(&f, req, 13);
    assert!(resp.refused.is_none() && served.supplied, "{served:?}");
    assert_eq!(f.hosted().access, fresh);
    let first = f.hosted();

    // A list that says something new is adopted and kept: the GP revoked.
    f.revoke_gp(at(20));
    exchange(&f.patient, &f.relay, &limits, rid, at(21)).unwrap();
    let revoked = f.hosted();
    assert_ne!(revoked.access, first.access);
    // The GP is granted again and a list naming it is signed at 23, but never reaches the
    // relay; the new grant is revoked, and the list signed at 25 says what the kept one says.
    let again = grant_with_keys(
        &f.patient,
        &rid,
        &f.gp,
        "notes",
        Ability::Append,
        &mut f.rng,
    );
    let between = request(&f, 23);
    let r = Revocation::sign(&f.patient.id, again.id(), at(24)).unwrap();
    {
        let mut rec = f.patient.vault.open_record(&f.patient.id, &rid).unwrap();
        rec.put_auth(vec![AuthItem::Revoke(r)], at(24), &mut f.rng)
            .unwrap();
    }
    exchange(&f.patient, &f.relay, &limits, rid, at(25)).unwrap();
    let newest = f.hosted();
    let kept = AccessList::open_kept(&newest.access, &rid).unwrap();
    assert_eq!(
        newest.access, revoked.access,
        "the kept list stands for the newer one"
    );
    assert!(newest.version > kept.version);
    // Replayed, the list of 23 is newer than the list kept but not than the newest adopted:
    // it loses, and the GP it names stays refused.
    let mut replay = request(&f, 26);
    replay.access = between.access.clone();
    let (resp, served) = answer(&f, replay, 26);
    assert!(resp.refused.is_none() && !served.supplied);
    assert_eq!(f.hosted().access, revoked.access);
    assert_eq!(f.hosted().version, newest.version);
    refused_nothing_here(exchange(&f.gp, &f.relay, &limits, rid, at(27)));

    // An unreadable note of the version is an error, not a record with an older version.
    an_unreadable_item_is_an_error(&f, &format!("hosted-supplied/{id}"));
}

/// Spoils the relay's local item `key` of the fixture's record: reading the record it keeps is
/// then an error, and the list of all records says so for this one.
fn an_unreadable_item_is_an_error(f: &Fixture, key: &str) {
    f.relay.vault.put_local(key, b"bad").unwrap();
    let limits = RelayLimits::default();
    let server = Server::new(&f.relay.vault, &f.relay.id, &limits);
    assert!(server.hosted(&f.blinded()).is_err());
    let all = server.all_hosted().unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].0, f.blinded().to_string());
    assert!(all[0].1.is_err());
    assert!(server.readable_hosted().unwrap().is_empty());
}

/// One kept record's damaged item spoils that record only: the relay still counts the others'
/// grantees as parties (not strangers), and still sweeps the others when their grant ends.
#[test]
fn a_damaged_record_leaves_the_relays_other_records_whole() {
    let mut f = fixture(61);
    let limits = RelayLimits::default();
    exchange(&f.patient, &f.relay, &limits, f.rid, at(10)).unwrap();
    // A second patient's record on the same relay, with the reader as its grantee.
    let (p2, rid2) = another_patient(&mut f, "Patient 2");
    grant_with_keys(&p2, &rid2, &f.reader, "notes", Ability::Read, &mut f.rng);
    exchange(&p2, &f.relay, &limits, rid2, at(11)).unwrap();
    let server = Server::new(&f.relay.vault, &f.relay.id, &limits);
    assert_eq!(server.readable_hosted().unwrap().len(), 2);
    assert!(server.parties(at(12)).contains(&f.gp.id.peer()));
    // The first record's bytes-used item is damaged.
    f.relay
        .vault
        .put_local(&format!("hosted-used/{}", f.blinded()), b"bad")
        .unwrap();
    let all = server.all_hosted().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all.iter().filter(|(_, h)| h.is_err()).count(), 1);
    let readable = server.readable_hosted().unwrap();
    assert_eq!(readable.len(), 1);
    assert_eq!(readable[0].1.record, rid2);
    // The second record's grantee is still a party; the first's is no longer known here.
    let parties = server.parties(at(12));
    assert!(parties.contains(&f.reader.id.peer()), "{parties:?}");
    assert!(!parties.contains(&f.gp.id.peer()), "{parties:?}");
    // The second record is still served whole.
    let report = exchange(&f.reader, &f.relay, &limits, rid2, at(13)).unwrap();
    assert!(report.in_sync, "{report:?}");
    assert_eq!(f.reader.texts(&rid2, "notes"), vec!["A note"]);
    // Long after every grant ended, the sweep deletes the second record and leaves the
    // damaged one alone.
    let later = at(60 * 24 * 2_000);
    assert_eq!(server.sweep(later).unwrap(), 1);
    let all = server.all_hosted().unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].0, f.blinded().to_string());
}

/// The patient's first request to the relay at 10 (its list and every wrap).
fn patient_first_request(f: &Fixture) -> StoreRequest {
    f.patient
        .peer()
        .relay_start(f.rid, f.relay.id.peer(), at(10), &mut TestRng::new(99))
        .unwrap()
}

#[test]
fn key_wraps_not_signed_by_the_record_root_are_not_kept_and_the_others_are() {
    let f = fixture(7);
    let limits = RelayLimits::default();
    let mut req = patient_first_request(&f);
    assert!(req.wraps.len() >= 3, "{} wraps", req.wraps.len());
    // Two of the device's wraps are altered after signing: one relabelled to another epoch,
    // one re-sealed to another recipient.
    let slot = |w: &KeyWrap| (w.section, w.epoch, w.recipient);
    let genuine: Vec<_> = req.wraps.iter().map(slot).collect();
    req.wraps[0].epoch += 7;
    let other = f.gp.id.agreement_public();
    let last = req.wraps.len() - 1;
    req.wraps[last].recipient = if req.wraps[last].recipient.into_array() == other {
        ByteArray::new([1; 32])
    } else {
        ByteArray::new(other)
    };
    let forged: Vec<_> = [&req.wraps[0], &req.wraps[last]].map(slot).to_vec();
    // The root's signature over the wraps as made no longer checks: each is judged alone.
    assert!(req.wraps_signed.is_some());
    let resp = ask(&f.relay, &limits, &f.patient, req, at(10));
    assert!(resp.refused.is_none());
    let kept: Vec<_> = f.hosted().wraps.iter().map(slot).collect();
    for s in &forged {
        assert!(!kept.contains(s), "a forged wrap was kept");
    }
    assert_eq!(kept.len(), genuine.len() - 2);
    assert!(kept.iter().all(|s| genuine[1..last].contains(s)));
}

#[test]
fn a_signature_over_the_wraps_by_any_key_but_the_record_root_vouches_for_none_of_them() {
    let f = fixture(7);
    let limits = RelayLimits::default();
    let mut req = patient_first_request(&f);
    let slot = |w: &KeyWrap| (w.section, w.epoch, w.recipient);
    let genuine: Vec<_> = req.wraps.iter().map(slot).collect();
    // One wrap relabelled, and the whole set signed again by a key that is not the root.
    req.wraps[0].epoch += 7;
    let forged = slot(&req.wraps[0]);
    let (other, _) = hearth_core::keys::Identity::generate(
        Role::Patient,
        "Ann Other".into(),
        &mut TestRng::new(5),
    );
    let other = other.root_key().expect("a patient holds a root key");
    req.wraps_signed = Some(ByteArray::new(KeyWrap::sign_all(other, &req.wraps)));
    let resp = ask(&f.relay, &limits, &f.patient, req, at(10));
    assert!(resp.refused.is_none());
    let kept: Vec<_> = f.hosted().wraps.iter().map(slot).collect();
    assert!(!kept.contains(&forged), "a forged wrap was kept");
    assert_eq!(kept.len(), genuine.len() - 1);
    assert!(kept.iter().all(|s| genuine[1..].contains(s)));
}

#[test]
fn a_push_counts_its_bytes_in_their_own_item_and_every_view_agrees() {
    let mut f = fixture(7);
    let rid = f.rid;
    let limits = RelayLimits::default();
    exchange(&f.patient, &f.relay, &limits, rid, at(10)).unwrap();
    let used = f.hosted().used;
    let item = format!("hosted-used/{}", f.blinded());
    assert_eq!(
        f.relay.vault.get_local(&item).unwrap(),
        Some(used.to_be_bytes().to_vec())
    );
    assert!(used > 0);
    // A new note, pushed under the same list (one made at the same time).
    f.patient.add(&rid, "notes", "one more", at(10), &mut f.rng);
    let report = exchange(&f.patient, &f.relay, &limits, rid, at(10)).unwrap();
    assert!(report.in_sync && report.sent == 1, "{report:?}");
    assert!(f.hosted().used > used);
    let server = Server::new(&f.relay.vault, &f.relay.id, &limits);
    let all = server.readable_hosted().unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].1.used, f.hosted().used);
}

#[test]
fn a_record_kept_before_its_bytes_had_an_item_of_their_own_keeps_its_count() {
    let mut f = fixture(7);
    let rid = f.rid;
    let limits = RelayLimits::default();
    exchange(&f.patient, &f.relay, &limits, rid, at(10)).unwrap();
    let used = f.hosted().used;
    // As a relay from before kept it: the bytes used inside the record's item, no item of
    // their own.
    #[derive(serde::Serialize)]
    struct Before {
        record: RecordId,
        access: serde_bytes::ByteBuf,
        version: u64,
        used: u64,
        wraps: Vec<KeyWrap>,
        updated: Timestamp,
    }
    let h = f.hosted();
    let before = Before {
        record: h.record,
        access: h.access,
        version: h.version,
        used: used + 1000,
        wraps: h.wraps,
        updated: h.updated,
    };
    let id = f.blinded().to_string();
    let bytes = serde_ipld_dagcbor::to_vec(&before).unwrap();
    f.relay
        .vault
        .put_local(&format!("hosted/{id}"), &bytes)
        .unwrap();
    f.relay
        .vault
        .delete_local(&[format!("hosted-used/{id}")])
        .unwrap();
    assert_eq!(f.hosted().used, used + 1000);
    // A push under the same list counts on from there, in the bytes' own item: the record's
    // item is not written again (it would lose its old count).
    f.patient.add(&rid, "notes", "one more", at(10), &mut f.rng);
    let report = exchange(&f.patient, &f.relay, &limits, rid, at(10)).unwrap();
    assert!(report.in_sync && report.sent == 1, "{report:?}");
    assert!(f.hosted().used > used + 1000);
    let item = f.relay.vault.get_local(&format!("hosted/{id}")).unwrap();
    assert!(item == Some(bytes), "the record's item was written again");
    // An unreadable count is an error, not a record with nothing used.
    an_unreadable_item_is_an_error(&f, &format!("hosted-used/{id}"));
}

#[test]
fn wraps_go_back_only_to_a_requester_that_does_not_hold_them() {
    let f = fixture(7);
    let rid = f.rid;
    let limits = RelayLimits::default();
    let relay = f.relay.id.peer();
    let start = |n: &Node| {
        n.peer()
            .relay_start(rid, relay, at(10), &mut TestRng::new(99))
            .unwrap()
    };
    // The patient's device sends the wraps it made: none come back.
    let req = start(&f.patient);
    assert!(req.wraps_signed.is_some() && !req.wraps_held);
    let resp = ask(&f.relay, &limits, &f.patient, req, at(10));
    assert!(resp.refused.is_none() && resp.wraps.is_empty());
    let kept = f.hosted().wraps;
    assert!(!kept.is_empty());
    // Sending them again (every round does) changes nothing and brings none back either.
    let resp = ask(&f.relay, &limits, &f.patient, start(&f.patient), at(10));
    assert!(resp.refused.is_none() && resp.wraps.is_empty());
    assert_eq!(f.hosted().wraps, kept);
    // A device sending none (as a linked device does) is sent every wrap kept, unless it says
    // it holds them.
    let mut bare = start(&f.patient);
    (bare.wraps, bare.wraps_signed) = (Vec::new(), None);
    let resp = ask(&f.relay, &limits, &f.patient, bare.clone(), at(10));
    assert_eq!(resp.wraps, kept);
    bare.wraps_held = true;
    let resp = ask(&f.relay, &limits, &f.patient, bare, at(10));
    assert!(resp.wraps.is_empty());
    // A grantee gets its own wraps, unless it says it holds them.
    let mut gp = start(&f.gp);
    let resp = ask(&f.relay, &limits, &f.gp, gp.clone(), at(10));
    assert!(!resp.wraps.is_empty());
    gp.wraps_held = true;
    assert!(ask(&f.relay, &limits, &f.gp, gp, at(10)).wraps.is_empty());
}

#[test]
fn a_push_over_the_quota_is_refused_and_nothing_stored_is_lost() {
    let mut f = fixture(7);
    let rid = f.rid;
    exchange(&f.patient, &f.relay, &RelayLimits::default(), rid, at(10)).unwrap();
    let used = f.hosted().used;
    let held = f.relay.vault.held_sections(&rid).unwrap();
    let stored = bundles(&f.relay, &rid);
    let small = RelayLimits {
        quota_bytes: used + 16,
        ..RelayLimits::default()
    };
    // The patient's new note does not fit.
    f.patient
        .add(&rid, "notes", "over the quota", at(11), &mut f.rng);
    let report = exchange(&f.patient, &f.relay, &small, rid, at(12)).unwrap();
    assert!(report.refused.iter().any(|r| r == QUOTA_FULL), "{report:?}");
    assert!(report.sections.iter().any(|s| s.ahead > 0), "{report:?}");
    assert_eq!(bundles(&f.relay, &rid), stored);
    assert_eq!(f.relay.vault.held_sections(&rid).unwrap(), held);
    assert_eq!(f.hosted().used, used);
    // Nor does the GP's (once it has fetched the record: fetching costs no quota).
    exchange(&f.gp, &f.relay, &small, rid, at(13)).unwrap();
    assert_eq!(f.gp.texts(&rid, "notes"), vec![NOTE]);
    f.gp.add(&rid, "notes", GP_NOTE, at(13), &mut f.rng);
    let report = exchange(&f.gp, &f.relay, &small, rid, at(13)).unwrap();
    assert!(report.refused.iter().any(|r| r == QUOTA_FULL), "{report:?}");
    assert_eq!(bundles(&f.relay, &rid), stored);
    // The record still serves what it holds.
    exchange(&f.reader, &f.relay, &small, rid, at(14)).unwrap();
    assert_eq!(f.reader.texts(&rid, "notes"), vec![NOTE]);
    // With room again, the pushes go through.
    let report = exchange(&f.patient, &f.relay, &RelayLimits::default(), rid, at(15)).unwrap();
    assert!(report.refused.is_empty(), "{report:?}");
    // The new note, and the patient's audit log, which now holds the relay's receipts.
    assert_eq!(bundles(&f.relay, &rid).len(), stored.len() + 2);
    assert!(f.hosted().used > used);
}

#[test]
fn tampered_bundles_and_bad_padding_are_rejected_and_not_stored() {
    let mut f = fixture(8);
    let limits = RelayLimits::default();
    let rid = f.rid;
    let relay = f.relay.id.peer();
    let notes = f.notes();
    exchange(&f.patient, &f.relay, &limits, rid, at(10)).unwrap();
    f.patient.add(&rid, "notes", "next", at(11), &mut f.rng);
    let good = log_of(&f.patient, &rid, &notes, &f.patient).pop().unwrap();
    let held = f.relay.vault.held_sections(&rid).unwrap();
    let stored = bundles(&f.relay, &rid);
    // A byte of the ciphertext flipped: still a bundle, no longer the author's.
    let mut tampered = good.clone();
    let hlen = u32::from_be_bytes(tampered[4..8].try_into().unwrap()) as usize;
    tampered[8 + hlen + 4 + 1] ^= 1;
    assert!(Bundle::decode(&tampered).unwrap().verify().is_err());
    // A clean frame with a byte of padding set; a frame one byte short.
    let mut dirty = pad(&good).to_vec();
    *dirty.last_mut().unwrap() = 1;
    let mut short = pad(&good).to_vec();
    short.pop();
    for (frame, why) in [
        (pad(&tampered).to_vec(), "signature"),
        (dirty, "malformed"),
        (short, "malformed"),
    ] {
        let mut req = f
            .patient
            .peer()
            .relay_start(rid, relay, at(12), &mut TestRng::new(99))
            .unwrap();
        req.push = vec![ByteBuf::from(frame)];
        let resp = ask(&f.relay, &limits, &f.patient, req, at(12));
        assert!(resp.refused.is_none());
        assert_eq!(resp.stored, 0);
        assert_eq!(resp.rejected.len(), 1, "{:?}", resp.rejected);
        assert!(resp.rejected[0].contains(why), "{:?}", resp.rejected);
        assert_eq!(bundles(&f.relay, &rid), stored);
        assert_eq!(f.relay.vault.held_sections(&rid).unwrap(), held);
    }
    // The untouched bundle is stored.
    let mut req = f
        .patient
        .peer()
        .relay_start(rid, relay, at(13), &mut TestRng::new(99))
        .unwrap();
    req.push = vec![pad(&good)];
    let resp = ask(&f.relay, &limits, &f.patient, req, at(13));
    assert_eq!((resp.stored, resp.rejected.len()), (1, 0), "{resp:?}");
    // A relay that tampers with what it serves gets nothing stored by the GP either.
    let req =
        f.gp.peer()
            .relay_start(rid, relay, at(14), &mut TestRng::new(99))
            .unwrap();
    let mut resp = ask(&f.relay, &limits, &f.gp, req, at(14));
    let mut flipped = 0;
    for p in &mut resp.bundles {
        let b = unpad(p).unwrap().to_vec();
        if Bundle::decode(&b).unwrap().header().section == notes {
            let mut t = b.clone();
            let hlen = u32::from_be_bytes(t[4..8].try_into().unwrap()) as usize;
            t[8 + hlen + 4 + 1] ^= 1;
            *p = pad(&t);
            flipped += 1;
        }
    }
    assert!(flipped > 0);
    let (_, report) =
        f.gp.peer()
            .on_relay_response(relay, rid, resp, at(14), &mut TestRng::new(98))
            .unwrap();
    assert!(!report.refused.is_empty(), "{report:?}");
    assert_eq!(f.gp.bundles_in(&rid, &notes), 0);
}

#[test]
fn store_messages_round_trip_and_oversize_fields_break_a_limit() {
    let f = fixture(9);
    let limits = RelayLimits::default();
    let rid = f.rid;
    let relay = f.relay.id.peer();
    exchange(&f.patient, &f.relay, &limits, rid, at(9)).unwrap();
    let req = f
        .patient
        .peer()
        .relay_start(rid, relay, at(10), &mut TestRng::new(99))
        .unwrap();
    assert!(req.access.is_some() && !req.wraps.is_empty() && !req.have.is_empty());
    let back = protocol::decode(&protocol::encode(&Message::Store(req.clone()))).unwrap();
    assert!(back.is_store());
    assert_eq!(back, Message::Store(req.clone()));
    let (resp, _) = Server::new(&f.relay.vault, &f.relay.id, &limits)
        .answer(
            f.patient.id.peer(),
            req.clone(),
            at(10),
            &mut TestRng::new(5),
        )
        .unwrap();
    assert!(!resp.have.is_empty());
    let back = protocol::decode(&protocol::encode(&Message::Stored(resp.clone()))).unwrap();
    assert_eq!(back, Message::Stored(resp.clone()));
    let limit = |m: Message| match protocol::decode(&protocol::encode(&m)) {
        Err(WireError::Limit(why)) => why,
        other => panic!("expected a limit error, got {other:?}"),
    };
    // Too many wraps, sections, authors; an access list too large; another version.
    let wrap = req.wraps[0].clone();
    let mut r = req.clone();
    r.wraps = vec![wrap.clone(); hearth_sync::relay::wire::MAX_WRAPS + 1];
    limit(Message::Store(r));
    let mut r = req.clone();
    r.have = (0..=protocol::MAX_SECTIONS)
        .map(|i| {
            let mut id = [1u8; 16];
            id[..8].copy_from_slice(&(i as u64).to_be_bytes());
            SectionHave::new(SectionId(id), &VersionVector::new())
        })
        .collect();
    limit(Message::Store(r));
    let mut r = req.clone();
    let head = *req.have[0].vv().values().next().unwrap();
    let mut vv = VersionVector::new();
    for i in 0..=protocol::MAX_AUTHORS {
        let mut k = [2u8; 32];
        k[..8].copy_from_slice(&(i as u64).to_be_bytes());
        vv.insert(hearth_core::ids::PeerKey(k), head);
    }
    r.have = vec![SectionHave::new(SectionId::AUTH, &vv)];
    limit(Message::Store(r));
    let mut r = req.clone();
    r.access = Some(ByteBuf::from(vec![
        0u8;
        hearth_sync::relay::access::MAX_ACCESS_LEN
            + 1
    ]));
    limit(Message::Store(r));
    let mut r = req.clone();
    r.v = 2;
    limit(Message::Store(r));
    let mut s = resp.clone();
    s.wraps = vec![wrap; hearth_sync::relay::wire::MAX_WRAPS + 1];
    limit(Message::Stored(s));
    let mut s = resp.clone();
    s.refused = Some("x".repeat(1_001));
    limit(Message::Stored(s));
    let mut s = resp.clone();
    s.access = Some(ByteBuf::from(vec![
        0u8;
        hearth_sync::relay::access::MAX_ACCESS_LEN
            + 1
    ]));
    limit(Message::Stored(s));
    let mut s = resp;
    s.v = 0;
    limit(Message::Stored(s));
}
