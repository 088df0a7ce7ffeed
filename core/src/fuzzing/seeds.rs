//! Valid inputs for the core's fuzz targets, made deterministically (a seeded generator and a
//! fixed clock): the seeds of the committed corpus and of the stable hostile runs.

use crate::audit::{Action, SignedEvent};
use crate::bundle::Bundle;
use crate::crypto::SymmetricKey;
use crate::extract::{ConsentChoice, Consents, Contribution, ExtractPurpose};
use crate::grant::request::{self, RequestSpec};
use crate::grant::{self, Ability, Grant, GrantSpec, Purpose, Revocation};
use crate::ids::{PeerKey, SectionId};
use crate::keys::{Identity, KdfParams, Keystore, Role};
use crate::ledger::{PeerAddrs, RecordedGrant, RevokeItem};
use crate::log::LogHead;
use crate::test_utils::{TEST_NOW, TestRng};

const DAY: i64 = 86_400_000;

/// A valid input or more for each of the core's targets, by target name.
pub fn all() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let mut rng = TestRng::new(17);
    let (patient, _) = Identity::generate(Role::Patient, "Edith Jones".into(), &mut rng);
    let (org, _) = Identity::generate(Role::Relay, "Calder Practice".into(), &mut rng);
    let (gp, _) = Identity::generate(Role::Professional, "Dr A. Shah".into(), &mut rng);
    let record = patient.record_id().expect("a patient has a record");
    let spec = |to: PeerKey, sections: &str, ability, days| {
        GrantSpec::new(
            to,
            sections.parse().expect("a section spec"),
            ability,
            TEST_NOW,
            TEST_NOW.saturating_add_millis(days * DAY),
        )
    };
    let direct = Grant::issue_root(
        &patient,
        spec(gp.peer(), "notes", Ability::Read, 30),
        &[],
        &mut rng,
    )
    .expect("issue");
    let mut to_org = spec(org.peer(), "notes,medications", Ability::Append, 30);
    to_org.depth = 1;
    let root = Grant::issue_root(&patient, to_org, &[], &mut rng).expect("issue");
    let child = Grant::delegate(
        &root,
        &org,
        spec(gp.peer(), "notes", Ability::Read, 7),
        &mut rng,
    )
    .expect("delegate");
    let chain = vec![root, child];

    let key = SymmetricKey::from_bytes([5; 32]);
    let bundle = |seq: u64, prev, payload: &[u8], rng: &mut TestRng| {
        Bundle::seal(
            record,
            SectionId([2; 16]),
            seq,
            prev,
            0,
            TEST_NOW,
            &key,
            payload,
            gp.device_key(),
            rng,
        )
        .expect("seal")
    };
    let first = bundle(1, None, b"a change's bytes", &mut rng);
    let second = bundle(
        2,
        Some(first.hash()),
        &[0x85, 0x6f, 0x4a, 0x83, 1, 2, 3],
        &mut rng,
    );

    let req = request::request(
        &gp,
        RequestSpec {
            record,
            scopes: grant::scopes(&"notes".parse().expect("spec"), Ability::Read),
            purpose: Purpose::DirectCare,
            duration_ms: DAY,
            reason: "review after a fall".into(),
            answer_within_ms: DAY,
        },
        None,
        TEST_NOW,
        &mut rng,
    )
    .expect("request");
    let credential = request::attest(
        &org,
        gp.peer(),
        "Dr A. Shah".into(),
        "GP".into(),
        "GMC 1234567".into(),
        Some("B12345".into()),
        TEST_NOW,
        TEST_NOW.saturating_add_millis(365 * DAY),
        vec![],
        &mut rng,
    )
    .expect("attest");
    let card = request::card(&gp).expect("card");

    let event = |prev, n: u8| {
        SignedEvent::sign(
            &gp,
            record,
            prev,
            TEST_NOW,
            Action::Read {
                sections: vec![crate::audit::SectionAt {
                    section: SectionId([n; 16]),
                    epoch: 0,
                }],
                authority: Some(crate::audit::Authority {
                    grant: direct.id(),
                    purpose: Purpose::DirectCare,
                }),
            },
        )
        .expect("sign")
    };
    let e1 = event(None, 1);
    let e2 = event(Some((1, e1.hash())), 2);

    let revocation = Revocation::sign(&patient, direct.id(), TEST_NOW).expect("revoke");

    let consents = Consents::from_choices(
        &record,
        [ConsentChoice::sign(
            patient.root_key().expect("root"),
            &record,
            ExtractPurpose::Planning,
            true,
            TEST_NOW,
        )],
    );
    let contribution = Contribution::create(
        patient.root_key().expect("root"),
        &consents,
        org.peer(),
        ExtractPurpose::Planning,
        &[],
        TEST_NOW,
        &mut rng,
    )
    .expect("contribute");

    let keystore = Keystore::seal(
        &gp,
        b"correct horse",
        KdfParams {
            m_kib: 8 * 1024,
            t: 1,
            p: 1,
        },
        &mut rng,
    )
    .expect("seal");
    let wrap = crate::record::KeyWrap::create(
        patient.root_key().expect("root"),
        record,
        SectionId([2; 16]),
        0,
        &key,
        gp.agreement_public(),
        &mut rng,
    )
    .expect("wrap");
    let store_items = vec![
        LogHead {
            seq: 2,
            hash: second.hash(),
        }
        .to_bytes()
        .to_vec(),
        serde_ipld_dagcbor::to_vec(&wrap).expect("encode"),
        PeerAddrs {
            addrs: vec!["/ip4/127.0.0.1/tcp/4001".into()],
        }
        .to_bytes(),
        keystore.to_bytes(),
        RecordedGrant::new(&chain).to_json().into_bytes(),
        RevokeItem::new(&revocation).to_json().into_bytes(),
    ];

    vec![
        (
            "bundle",
            vec![first.encoded().to_vec(), second.encoded().to_vec()],
        ),
        (
            "grant_token",
            vec![
                grant::chain_to_token(&chain).into_bytes(),
                grant::chain_to_token(std::slice::from_ref(&direct)).into_bytes(),
            ],
        ),
        (
            "grant_chain",
            vec![
                grant::chain_to_bytes(&chain),
                grant::chain_to_bytes(std::slice::from_ref(&direct)),
            ],
        ),
        (
            "signed_tokens",
            vec![
                req.to_token().into_bytes(),
                credential.to_token().into_bytes(),
                card.to_token().into_bytes(),
            ],
        ),
        (
            "audit_event",
            vec![e1.bytes().to_vec(), e2.bytes().to_vec()],
        ),
        ("revocation", vec![revocation.to_bytes()]),
        ("contribution", vec![contribution.to_file()]),
        ("store_item", store_items),
        ("fhir_import", vec![FHIR_SEED.as_bytes().to_vec()]),
    ]
}

/// A small FHIR R4 transaction bundle of the kind `hearth import` reads: a patient (a test NHS
/// number) and one observation referring to her.
const FHIR_SEED: &str = r#"{"resourceType":"Bundle","type":"collection","entry":[
{"fullUrl":"urn:uuid:9b1e7e36-5c55-4a4b-9d55-1f0d6c3a2f01","resource":{"resourceType":"Patient","id":"p1",
"identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9434765919"}],
"name":[{"family":"Jones","given":["Edith"]}],"birthDate":"1941-03-02","gender":"female"}},
{"fullUrl":"urn:uuid:9b1e7e36-5c55-4a4b-9d55-1f0d6c3a2f02","resource":{"resourceType":"Observation","id":"o1",
"status":"final","code":{"coding":[{"system":"http://snomed.info/sct","code":"271649006","display":"Systolic blood pressure"}]},
"subject":{"reference":"urn:uuid:9b1e7e36-5c55-4a4b-9d55-1f0d6c3a2f01"},"effectiveDateTime":"2026-11-01T09:00:00Z",
"valueQuantity":{"value":142,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}}}]}"#;
