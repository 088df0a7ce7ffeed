//! Supplying, fetching, pushing and collecting through a relay; who is served; expiry and
//! retention; what the relay holds.

use super::*;

#[test]
fn the_patient_supplies_the_relay_and_a_gp_who_never_met_them_syncs_through_it() {
    let mut f = fixture(1);
    supply_fetch_push_collect(&mut f);
}

#[test]
fn a_read_only_grantee_gets_its_sections_only_and_cannot_push() {
    let mut f = fixture(2);
    let limits = RelayLimits::default();
    let rid = f.rid;
    let (notes, meds) = (f.notes(), f.meds());
    exchange(&f.patient, &f.relay, &limits, rid, at(10)).unwrap();
    assert!(
        f.relay.bundles_in(&rid, &meds) > 0,
        "the relay holds medications"
    );
    // What the relay sends the reader: the auth document and notes, nothing else.
    let req = f
        .reader
        .peer()
        .relay_start(rid, f.relay.id.peer(), at(11), &mut TestRng::new(99))
        .unwrap();
    let resp = ask(&f.relay, &limits, &f.reader, req, at(11));
    assert!(resp.refused.is_none());
    assert!(!resp.bundles.is_empty());
    let sections: Vec<SectionId> = resp
        .bundles
        .iter()
        .map(|p| Bundle::decode(unpad(p).unwrap()).unwrap().header().section)
        .collect();
    assert!(sections.contains(&notes));
    assert!(
        sections
            .iter()
            .all(|s| *s == notes || *s == SectionId::AUTH),
        "{sections:?}"
    );
    assert!(resp.have.is_empty(), "nowhere to push");
    let got = exchange(&f.reader, &f.relay, &limits, rid, at(11)).unwrap();
    assert!(got.refused.is_empty(), "{got:?}");
    assert_eq!(f.reader.texts(&rid, "notes"), vec![NOTE]);
    assert_eq!(f.reader.bundles_in(&rid, &meds), 0);
    assert!(f.reader.texts(&rid, "medications").is_empty());
    // Its node would not push; a hostile one pushes a bundle of its own to notes, signed
    // and chained (the relay cannot tell what it holds): rejected, the store unchanged.
    let epoch = Bundle::decode(&log_of(&f.patient, &rid, &notes, &f.patient)[0])
        .unwrap()
        .header()
        .epoch;
    let sneaky = Bundle::seal(
        rid,
        notes,
        1,
        None,
        epoch,
        at(12),
        &SymmetricKey::from_bytes([7; 32]),
        b"sneaky",
        f.reader.id.device_key(),
        &mut f.rng,
    )
    .unwrap();
    assert!(sneaky.verify().is_ok());
    let store = everything(&f.relay);
    let report = exchange(&f.reader, &f.relay, &limits, rid, at(13)).unwrap();
    assert_eq!(report.sent, 0, "{report:?}");
    let mut req = f
        .reader
        .peer()
        .relay_start(rid, f.relay.id.peer(), at(13), &mut TestRng::new(99))
        .unwrap();
    req.push = vec![pad(sneaky.encoded())];
    let resp = ask(&f.relay, &limits, &f.reader, req, at(13));
    assert!(resp.refused.is_none());
    assert_eq!(resp.stored, 0);
    assert_eq!(resp.rejected.len(), 1, "{:?}", resp.rejected);
    assert_eq!(everything(&f.relay), store);
    // The same bundle from the GP (its own, to notes, which it may append to) is stored:
    // the check is about the reader's rights.
    let gps = Bundle::seal(
        rid,
        notes,
        1,
        None,
        epoch,
        at(12),
        &SymmetricKey::from_bytes([7; 32]),
        b"sneaky",
        f.gp.id.device_key(),
        &mut f.rng,
    )
    .unwrap();
    let mut req =
        f.gp.peer()
            .relay_start(rid, f.relay.id.peer(), at(14), &mut TestRng::new(99))
            .unwrap();
    req.push = vec![pad(gps.encoded())];
    let resp = ask(&f.relay, &limits, &f.gp, req, at(14));
    assert_eq!((resp.stored, resp.rejected.len()), (1, 0), "{resp:?}");
    assert_ne!(everything(&f.relay), store);
}

#[test]
fn a_stranger_and_an_unknown_record_get_the_same_refusal() {
    let f = fixture(3);
    let limits = RelayLimits::default();
    let rid = f.rid;
    let relay = f.relay.id.peer();
    let unknown = RecordId([9; 32]);
    // Before the patient supplies the relay, the record is unknown there even to the GP.
    refused_nothing_here(exchange(&f.gp, &f.relay, &limits, rid, at(9)));
    exchange(&f.patient, &f.relay, &limits, rid, at(10)).unwrap();
    let store = everything(&f.relay);
    let req = f
        .stranger
        .peer()
        .relay_start(rid, relay, at(11), &mut TestRng::new(99))
        .unwrap();
    let for_record = ask(&f.relay, &limits, &f.stranger, req, at(11));
    assert_eq!(for_record, refusal_of(blind(&rid, &relay), NOTHING_HERE));
    let req = f
        .stranger
        .peer()
        .relay_start(unknown, relay, at(11), &mut TestRng::new(99))
        .unwrap();
    let for_unknown = ask(&f.relay, &limits, &f.stranger, req, at(11));
    assert_eq!(
        for_unknown,
        refusal_of(blind(&unknown, &relay), NOTHING_HERE)
    );
    // The same words, and nothing else, either way; the GP asking for the unknown record too.
    let req =
        f.gp.peer()
            .relay_start(rid, relay, at(11), &mut TestRng::new(99))
            .unwrap();
    let mut req = StoreRequest {
        record: blind(&unknown, &relay),
        ..req
    };
    req.have.clear();
    let gp_unknown = ask(&f.relay, &limits, &f.gp, req, at(11));
    for r in [&for_record, &for_unknown, &gp_unknown] {
        assert_eq!(r.refused.as_deref(), Some(NOTHING_HERE));
        assert!(r.bundles.is_empty() && r.wraps.is_empty() && r.have.is_empty());
        assert!(r.access.is_none());
    }
    refused_nothing_here(exchange(&f.stranger, &f.relay, &limits, rid, at(11)));
    // A stranger claiming to supply the record with a list it signed itself changes nothing.
    let mut req = f
        .stranger
        .peer()
        .relay_start(rid, relay, at(12), &mut TestRng::new(99))
        .unwrap();
    let list = f
        .patient
        .peer()
        .relay_access(
            &f.patient.vault.open_record(&f.patient.id, &rid).unwrap(),
            &relay,
            at(12),
        )
        .unwrap();
    req.access = Some(ByteBuf::from(list.to_bytes()));
    let resp = ask(&f.relay, &limits, &f.stranger, req, at(12));
    assert_eq!(resp.refused.as_deref(), Some(NOTHING_HERE));
    assert_eq!(everything(&f.relay), store);
    assert_eq!(f.stranger.vault.records().unwrap(), Vec::<RecordId>::new());
}

#[test]
fn a_revoked_grantee_is_refused_once_the_patient_supplies_the_relay_again() {
    let mut f = fixture(4);
    let limits = RelayLimits::default();
    let rid = f.rid;
    exchange(&f.patient, &f.relay, &limits, rid, at(10)).unwrap();
    exchange(&f.gp, &f.relay, &limits, rid, at(11)).unwrap();
    assert_eq!(f.gp.texts(&rid, "notes"), vec![NOTE]);
    f.revoke_gp(at(20));
    // Until the patient's node supplies a new list, the relay goes by the old one.
    exchange(&f.gp, &f.relay, &limits, rid, at(21)).unwrap();
    exchange(&f.patient, &f.relay, &limits, rid, at(22)).unwrap();
    refused_nothing_here(exchange(&f.gp, &f.relay, &limits, rid, at(23)));
    // Its pushes are refused with the rest.
    f.gp.add(&rid, "notes", GP_NOTE, at(24), &mut f.rng);
    let before = bundles(&f.relay, &rid);
    let mut req =
        f.gp.peer()
            .relay_start(rid, f.relay.id.peer(), at(24), &mut TestRng::new(99))
            .unwrap();
    let notes = f.notes();
    req.push = log_of(&f.gp, &rid, &notes, &f.gp)
        .iter()
        .map(|b| pad(b))
        .collect();
    let resp = ask(&f.relay, &limits, &f.gp, req, at(24));
    assert_eq!(resp.refused.as_deref(), Some(NOTHING_HERE));
    assert_eq!(bundles(&f.relay, &rid), before);
    // The reader's grant was not revoked.
    exchange(&f.reader, &f.relay, &limits, rid, at(25)).unwrap();
    assert_eq!(f.reader.texts(&rid, "notes"), vec![NOTE]);
}

#[test]
fn once_the_relay_grant_expires_everyone_is_refused() {
    let f = fixture(5);
    let limits = RelayLimits::default();
    let rid = f.rid;
    let relay = f.relay.id.peer();
    let server = Server::new(&f.relay.vault, &f.relay.id, &limits);
    exchange(&f.patient, &f.relay, &limits, rid, at(10)).unwrap();
    exchange(&f.gp, &f.relay, &limits, rid, at(11)).unwrap();
    // (grants allow a minute of clock skew)
    let expired = TEST_NOW.saturating_add_millis(RELAY_DAYS * DAY + 2 * 60_000);
    let just_before = TEST_NOW.saturating_add_millis(RELAY_DAYS * DAY - 1);
    // Right up to the end, it serves (the grantees' grants last longer than the relay's).
    exchange_at(&f.gp, &f.relay, &limits, rid, at(12), just_before).unwrap();
    assert!(server.parties(just_before).contains(&f.gp.id.peer()));
    for who in [&f.patient, &f.gp, &f.reader] {
        refused_nothing_here(exchange_at(who, &f.relay, &limits, rid, at(12), expired));
    }
    assert!(server.parties(expired).is_empty());
    // The patient's node itself no longer makes a list for the relay.
    assert!(
        f.patient
            .peer()
            .relay_start(rid, relay, expired, &mut TestRng::new(99))
            .is_err()
    );
    // Kept through the retention period (the patient may renew), then deleted whole.
    assert_eq!(server.sweep(expired).unwrap(), 0);
    assert!(!f.relay.vault.held_sections(&rid).unwrap().is_empty());
    assert_eq!(f.relay.vault.local_count(&HOSTED_COUNT).unwrap(), 1);
    let past = expired.saturating_add_millis(limits.retention_ms + 1);
    let items = |kind: &str| f.relay.vault.local_items(kind).unwrap().len();
    assert_eq!((items("hosted-used/"), items("hosted-supplied/")), (1, 1));
    assert_eq!(server.sweep(past).unwrap(), 1);
    assert!(f.relay.vault.held_sections(&rid).unwrap().is_empty());
    assert!(server.all_hosted().unwrap().is_empty());
    assert_eq!((items("hosted-used/"), items("hosted-supplied/")), (0, 0));
    assert_eq!(f.relay.vault.local_count(&HOSTED_COUNT).unwrap(), 0);
    assert_eq!(server.sweep(past).unwrap(), 0);
}

#[test]
fn the_relay_store_holds_no_name_nhs_number_note_or_section_name() {
    let mut f = fixture(10);
    supply_fetch_push_collect(&mut f);
    // The patient's relay grant travels in the access list: its scopes name every section
    // class (`notes:*`, `medications:*`, ...), the same for every patient, so it says nothing
    // about this one. It is checked to be exactly that and then blanked; nothing else may
    // name anything.
    let scopes: Vec<String> = f
        .relay_grant
        .body()
        .scopes
        .iter()
        .map(|s| format!("{s:?}"))
        .collect();
    assert_eq!(f.relay_grant.body().keys.len(), 0);
    let whole = grant::scopes(
        &SectionClass::ALL
            .iter()
            .map(|c| format!("{c}:*"))
            .collect::<Vec<_>>()
            .join(",")
            .parse()
            .unwrap(),
        Ability::Relay,
    );
    assert_eq!(
        scopes,
        whole.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>()
    );
    let relay_grant = grant::chain_to_bytes(std::slice::from_ref(&f.relay_grant));
    let all: Vec<(Vec<u8>, Vec<u8>)> = everything(&f.relay)
        .into_iter()
        .map(|(k, mut v)| {
            while let Some(i) = v.windows(relay_grant.len()).position(|w| w == relay_grant) {
                v[i..i + relay_grant.len()].fill(0);
            }
            (k, v)
        })
        .collect();
    assert!(all.len() > 10);
    // The scan finds what is there: the record id in bundle headers, the blinded id in keys.
    assert!(all.iter().any(|(_, v)| contains(v, &f.rid.0)));
    let blinded = f.blinded().to_string();
    assert!(all.iter().any(|(k, _)| contains(k, blinded.as_bytes())));
    for canary in [
        PATIENT_NAME,
        "Canarywood",
        NHS,
        NOTE,
        "CANARY",
        MED,
        "Metformin",
        GP_NOTE,
        "notes",
        "medications",
        "Dr Gee",
    ] {
        for (k, v) in &all {
            assert!(
                !contains(k, canary.as_bytes()) && !contains(v, canary.as_bytes()),
                "the relay's store holds {canary:?} (key {:?})",
                String::from_utf8_lossy(k)
            );
        }
    }
}

/// Incompressible base64 of `len` random bytes.
fn noise(seed: u8, len: usize) -> String {
    let mut bytes = Vec::with_capacity(len + 32);
    let mut i = 0u64;
    while bytes.len() < len {
        bytes.extend_from_slice(&crypto::sha256(&[&[seed], &i.to_be_bytes()]));
        i += 1;
    }
    bytes.truncate(len);
    data_encoding::BASE64.encode(&bytes)
}

#[test]
fn a_record_larger_than_one_message_travels_in_several() {
    let mut f = fixture(11);
    let limits = RelayLimits::default();
    let rid = f.rid;
    // Documents of about 1 MiB each: a bundle just over 1 MiB pads to 2 MiB, so the bundles
    // that fit the 12 MiB bundle budget of one message pad to more than its 16 MiB limit.
    {
        let mut rec = f.patient.vault.open_record(&f.patient.id, &rid).unwrap();
        for n in 0..12 {
            let doc = json!({
                "title": "scan",
                "content_type": "application/pdf",
                "data_base64": noise(n, 786_432),
            });
            rec.add_entry(&name("documents"), &doc, at(5), &mut f.rng)
                .unwrap();
        }
    }
    let docs = section_id(&f.patient, &rid, "documents");
    let sizes: Vec<usize> = log_of(&f.patient, &rid, &docs, &f.patient)
        .iter()
        .map(Vec::len)
        .collect();
    let raw: usize = sizes.iter().sum();
    let padded: usize = sizes.iter().map(|n| pad(&vec![0; *n]).len()).sum();
    assert!(
        raw < protocol::MAX_BUNDLE_BYTES + (2 << 20) && padded > protocol::MAX_MESSAGE + (4 << 20),
        "{sizes:?}"
    );
    let report = exchange(&f.patient, &f.relay, &limits, rid, at(10)).unwrap();
    assert!(report.refused.is_empty(), "{report:?}");
    assert_eq!(
        f.relay.vault.held_sections(&rid).unwrap(),
        f.patient.vault.held_sections(&rid).unwrap()
    );
    // A grantee who may read the documents fetches them all.
    let archivist = Node::new(Role::Professional, "Archivist", &mut f.rng);
    grant_with_keys(
        &f.patient,
        &rid,
        &archivist,
        "documents",
        Ability::Read,
        &mut f.rng,
    );
    exchange(&f.patient, &f.relay, &limits, rid, at(11)).unwrap();
    let got = exchange(&archivist, &f.relay, &limits, rid, at(12)).unwrap();
    assert!(got.refused.is_empty(), "{got:?}");
    assert_eq!(archivist.bundles_in(&rid, &docs), 12);
}

/// A round's later request pushes what the first answer showed the relay lacks, and carries
/// none of what went with the first: no list, no wraps or their signature, no letters, no
/// audit events; it says it holds its wraps.
#[test]
fn a_rounds_later_request_carries_only_what_it_pushes_and_what_it_holds() {
    let mut f = fixture(12);
    let limits = RelayLimits::default();
    let rid = f.rid;
    let relay = f.relay.id.peer();
    // (`events`: whether the first request carries audit events.)
    let later_request = |f: &Fixture, who: &Node, events: bool| {
        let first = who
            .peer()
            .relay_start(rid, relay, at(14), &mut TestRng::new(99))
            .unwrap();
        assert_eq!(!first.audit.is_empty(), events);
        let resp = ask(&f.relay, &limits, who, first, at(14));
        let (next, _) = who
            .peer()
            .on_relay_response(relay, rid, resp, at(14), &mut TestRng::new(98))
            .unwrap();
        let later = next.expect("a later request pushes the new note");
        assert!(!later.push.is_empty() && !later.have.is_empty());
        assert!(later.access.is_none() && later.wraps.is_empty() && later.wraps_signed.is_none());
        assert!(later.wraps_held);
        assert!(later.post.is_empty() && later.ack.is_empty() && later.audit.is_empty());
        let resp = ask(&f.relay, &limits, who, later, at(14));
        assert!(resp.refused.is_none() && resp.stored == 1, "{resp:?}");
    };
    exchange(&f.patient, &f.relay, &limits, rid, at(10)).unwrap();
    f.patient.add(&rid, "notes", "one more", at(11), &mut f.rng);
    later_request(&f, &f.patient, false);
    // A grantee's too, with its report of a read to send.
    exchange(&f.gp, &f.relay, &limits, rid, at(12)).unwrap();
    f.gp.add(&rid, "notes", "the GP's note", at(13), &mut f.rng);
    let read = hearth_core::audit::Action::Read {
        sections: vec![hearth_core::audit::SectionAt {
            section: f.notes(),
            epoch: 0,
        }],
        authority: None,
    };
    f.gp.vault.journal(&f.gp.id, rid, read, at(13)).unwrap();
    later_request(&f, &f.gp, true);
}
