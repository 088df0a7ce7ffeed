//! The extract tests, by concern: the patient's choices, the profile, contributions and
//! their files, and pooling. The fixtures (a patient, a full record, a contribution) are here.

mod choices;
mod contributions;
mod pooling;
mod profile;

use super::*;
use crate::crypto::{self, Domain};
use crate::ids::PeerKey;
use crate::keys::{Identity, Role};
use crate::record::SectionView;
use crate::record::{NewRecord, Vault};
use crate::section::SectionName;
use crate::store::MemoryStore;
use crate::test_utils::{TEST_NOW, TestRng};
use data_encoding::{BASE32_NOPAD, BASE64URL_NOPAD};
use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use serde_json::json;
use std::collections::BTreeMap;

const NAME: &str = "Edith Canary-Jones";
const NHS: &str = "9434765919";
const ADDRESS: &str = "17 Quarry Lane, Hebden Bridge";
const POSTCODE: &str = "HX7 8AA";
const BORN: &str = "1941-03-09";
const PHONE: &str = "01422 845123";
const NOTE: &str = "canary note about the knee";

fn patient(seed: u64) -> Identity {
    Identity::generate(Role::Patient, NAME.into(), &mut TestRng::new(seed)).0
}

fn on(id: &Identity, purpose: ExtractPurpose) -> Consents {
    let record = id.record_id().unwrap();
    Consents::from_choices(
        &record,
        [ConsentChoice::sign(
            id.root_key().unwrap(),
            &record,
            purpose,
            true,
            TEST_NOW,
        )],
    )
}

/// A record with full demographics, current and past conditions and medicines, and sensitive
/// sections, read back as the node would read it.
fn sections(id: &Identity) -> Vec<SectionView> {
    let mut rng = TestRng::new(99);
    let vault = Vault::new(MemoryStore::new());
    let demographics = json!({
        "name": NAME, "nhs_number": NHS, "birth_date": BORN, "gender": "female",
        "address": ADDRESS, "postcode": POSTCODE, "phone": PHONE, "email": "edith@example.org",
        "gp_practice": "Calder Practice B12345"
    });
    let rid = vault
        .create_record(
            id,
            NewRecord {
                demographics: Some(demographics),
            },
            TEST_NOW,
            &mut rng,
        )
        .unwrap();
    let mut rec = vault.open_record(id, &rid).unwrap();
    let entries = [
        (
            "conditions",
            json!({"name": "Type 2 diabetes", "code": {"system": "snomed", "code": "44054006"}, "note": NOTE}),
        ),
        (
            "conditions",
            json!({"name": "Hypertension", "code": {"system": "icd10", "code": "I10"}, "clinical_status": "active"}),
        ),
        (
            "conditions",
            json!({"name": "Old fracture", "code": {"system": "snomed", "code": "263204007"}, "clinical_status": "resolved"}),
        ),
        (
            "conditions",
            json!({"name": "Ruled out asthma", "code": {"system": "snomed", "code": "195967001"}, "verification_status": "refuted"}),
        ),
        (
            "conditions",
            json!({"name": "Uncoded worry about the canary"}),
        ),
        (
            "conditions:mental-health",
            json!({"name": "Depression", "code": {"system": "snomed", "code": "35489007"}}),
        ),
        (
            "medications",
            json!({"name": "Metformin", "code": {"system": "dmd", "code": "325278007"}, "status": "active", "dose": "500 mg"}),
        ),
        (
            "medications",
            json!({"name": "Amoxicillin", "code": {"system": "dmd", "code": "323509004"}, "status": "completed"}),
        ),
        (
            "medications",
            json!({"name": "Ibuprofen", "code": {"system": "dmd", "code": "329652003"}, "end": "2020-01-01"}),
        ),
        ("notes", json!({"text": NOTE})),
        // Marked entered in error below.
        (
            "conditions",
            json!({"name": "Wrong patient", "code": {"system": "snomed", "code": "38341003"}}),
        ),
    ];
    let mut last = None;
    for (section, body) in entries {
        let name: SectionName = section.parse().unwrap();
        last = Some(rec.add_entry(&name, &body, TEST_NOW, &mut rng).unwrap());
    }
    rec.mark_error(&last.unwrap(), "wrong patient", TEST_NOW, &mut rng)
        .unwrap();
    rec.sections()
        .into_iter()
        .map(|s| rec.show(&s.name).unwrap())
        .collect()
}

fn contribute(
    id: &Identity,
    recipient: PeerKey,
    purpose: ExtractPurpose,
    views: &[SectionView],
    seed: u64,
) -> Contribution {
    Contribution::create(
        id.root_key().unwrap(),
        &on(id, purpose),
        recipient,
        purpose,
        views,
        TEST_NOW,
        &mut TestRng::new(seed),
    )
    .unwrap()
}

const ICB: PeerKey = PeerKey([7; 32]);
const UNI: PeerKey = PeerKey([8; 32]);

/// A contribution of `body` signed with `key`, whatever the body says (as other software
/// might make one).
fn signed_by(key: &SigningKey, body: ContributionBody) -> Contribution {
    let signed = serde_ipld_dagcbor::to_vec(&body).unwrap();
    let signature = crypto::sign(key, Domain::Contribution, &[&signed]);
    Contribution {
        body,
        signed,
        signature,
    }
}
