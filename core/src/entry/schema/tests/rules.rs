//! Dates, the order of starts and ends, code systems and each class's own rules.

use super::*;
use crate::entry::schema::dates::{DATE_FORMAT, DATETIME_FORMAT, NOT_A_DATE, not_before};

#[test]
fn dates() {
    for good in [
        "2024",
        "2024-05",
        "2024-05-01",
        "2024-02-29",
        "0001-01-01",
        "9999-12-31",
    ] {
        assert!(check_date(good).is_ok(), "{good}");
    }
    for bad in [
        "2024-5-1",
        "01/05/2024",
        "2024/05/01",
        "24-05-01",
        "20240501",
        "2024-05-01T10:00:00Z",
        " 2024",
        "2024-05-",
        "2024-0a-01",
        "+2024-05-01",
        "２０２４",
    ] {
        assert_eq!(check_date(bad), Err(DATE_FORMAT), "{bad}");
    }
    for unreal in [
        "2023-02-29",
        "2024-13-01",
        "2024-00-10",
        "2024-04-31",
        "0000",
        "2024-05-00",
    ] {
        assert_eq!(check_date(unreal), Err(NOT_A_DATE), "{unreal}");
    }
    for good in [
        "2024",
        "2024-05",
        "2024-05-01",
        "2024-05-01T10:00:00Z",
        "2024-05-01T10:00:00+01:00",
        "2024-05-01T10:00:00-05:30",
        "2024-05-01T10:00:00.123456789Z",
    ] {
        assert!(check_datetime(good).is_ok(), "{good}");
    }
    for bad in [
        "2024-05-01T10:00:00",
        "2024-05-01T10:00Z",
        "2024-05-01 10:00:00Z",
        "2024-05-01t10:00:00z",
        "2024-05-01T10:00:00.Z",
        "2024-05-01T10:00:00.1234567890Z",
        "2024-05-01T10:00:00+0100",
        "2024-05T10:00:00Z",
        "yesterday",
    ] {
        assert_eq!(check_datetime(bad), Err(DATETIME_FORMAT), "{bad}");
    }
    assert_eq!(check_datetime("2024-02-30T10:00:00Z"), Err(NOT_A_DATE));
    assert!(check_datetime("2024-05-01T25:00:00Z").is_err());

    use SectionClass as C;
    assert_err(
        C::Demographics,
        json!({"name": "x", "birth_date": "09/03/1941"}),
        "birth_date",
        "YYYY-MM-DD",
    );
    assert_err(
        C::Demographics,
        json!({"name": "x", "birth_date": "1941-02-30"}),
        "birth_date",
        "not a real calendar date",
    );
    assert_err(
        C::Demographics,
        json!({"name": "x", "birth_date": 1941}),
        "birth_date",
        "must be text",
    );
    assert_err(
        C::Allergies,
        json!({"substance": "x", "onset": "last year"}),
        "onset",
        "YYYY-MM-DD",
    );
    assert_err(
        C::Encounters,
        json!({"class": "x", "start": "2024-05-01T10:00"}),
        "start",
        "UTC offset",
    );
    assert_err(
        C::Observations,
        json!({"name": "x", "value": 1, "effective": "today"}),
        "effective",
        "UTC offset",
    );
    assert_err(
        C::SocialCareAssessments,
        json!({"assessment_type": "x", "date": "2024-05-01T10:00:00Z"}),
        "date",
        "YYYY-MM-DD",
    );
    assert_err(
        C::AdvanceCarePlan,
        json!({"dnacpr": true, "review_date": "soon"}),
        "review_date",
        "YYYY-MM-DD",
    );
}

#[test]
fn ends_are_not_before_starts() {
    assert!(not_before("2024-05-02", "2024-05-01"));
    assert!(not_before("2024-05-01", "2024-05-01"));
    assert!(not_before("2024", "2024-05-01"));
    assert!(not_before("2024-05", "2024-05-31"));
    assert!(!not_before("2023-12", "2024"));
    assert!(not_before(
        "2024-05-01T09:00:00Z",
        "2024-05-01T10:00:00+01:00"
    ));
    assert!(!not_before(
        "2024-05-01T09:59:59Z",
        "2024-05-01T11:00:00+01:00"
    ));
    assert!(not_before("2024-05-01", "2024-05-01T23:00:00Z"));

    use SectionClass as C;
    assert_err(
        C::Medications,
        json!({"name": "x", "start": "2024-05-01", "end": "2024-04-30"}),
        "end",
        "must not be before start",
    );
    assert_err(
        C::Encounters,
        json!({"class": "x", "start": "2024-05-01T10:00:00Z", "end": "2024-05-01T09:00:00Z"}),
        "end",
        "must not be before start",
    );
    assert_err(
        C::Conditions,
        json!({"name": "x", "onset": "2020", "abatement": "2019"}),
        "abatement",
        "must not be before onset",
    );
    assert_err(
        C::CarePlan,
        json!({"title": "x", "start": "2024-05", "end": "2024-04"}),
        "end",
        "must not be before start",
    );
    assert_err(
        C::SocialCareSupportPlan,
        json!({"title": "x", "start": "2024-05-01", "end": "2023"}),
        "end",
        "must not be before start",
    );
}

#[test]
fn code_system_aliases_are_normalised() {
    for (alias, uri) in [
        ("snomed", SNOMED_CT),
        ("SNOMED", SNOMED_CT),
        ("loinc", LOINC),
        ("dmd", DMD),
        ("icd10", ICD_10),
        (
            "https://fhir.nhs.uk/Id/ods-organization-code",
            "https://fhir.nhs.uk/Id/ods-organization-code",
        ),
        (
            "urn:oid:2.16.840.1.113883.6.96",
            "urn:oid:2.16.840.1.113883.6.96",
        ),
    ] {
        let body = json!({"substance": "x", "code": {"system": alias, "code": "1"}});
        let entry = EntryBody::from_json(SectionClass::Allergies, &body).unwrap();
        assert_eq!(entry.to_json()["code"]["system"], uri, "{alias}");
        // The structural serde derive normalises too.
        let code: Code = serde_json::from_value(json!({"system": alias, "code": "1"})).unwrap();
        assert_eq!(code.system, uri);
    }
    assert_eq!(code_system_uri("read"), "read");
    for bad in [
        "read",
        "snomed ct",
        "http:",
        ":x",
        "1http://x",
        "http://exa mple",
    ] {
        assert_err(
            SectionClass::Allergies,
            json!({"substance": "x", "code": {"system": bad, "code": "1"}}),
            "code.system",
            "code system URI",
        );
    }
    assert_err(
        SectionClass::Allergies,
        json!({"substance": "x", "code": {"system": "snomed", "code": " 1"}}),
        "code.code",
        "white space",
    );
}

#[test]
fn class_rules() {
    use SectionClass as C;
    assert_err(
        C::Observations,
        json!({"name": "w"}),
        "value",
        "give a value, a value_text or components",
    );
    assert_err(
        C::Observations,
        json!({"name": "w", "components": []}),
        "value",
        "give a value",
    );
    assert_err(
        C::Observations,
        json!({"name": "w", "value": 1, "value_text": "one"}),
        "value_text",
        "not both",
    );
    assert_err(
        C::Observations,
        json!({"name": "w", "value_text": "one", "unit": "kg"}),
        "unit",
        "needs a numeric value",
    );
    assert_err(
        C::Observations,
        json!({"name": "BP", "components": [{"name": "a"}]}),
        "components[0].value",
        "give a value or a value_text",
    );
    assert_err(
        C::Conditions,
        json!({"name": "x", "clinical_status": "active", "abatement": "2020"}),
        "clinical_status",
        "inactive, remission or resolved",
    );
    assert_err(
        C::Notes,
        json!({"text": "   \n "}),
        "text",
        "must not be blank",
    );
    assert_err(C::Notes, json!({"text": ""}), "text", "must not be blank");
    assert_err(
        C::Notes,
        json!({"text": "x", "title": ""}),
        "title",
        "must not be blank",
    );
    assert_err(
        C::Notes,
        json!({"text": "bell\u{7}"}),
        "text",
        "control characters",
    );
    assert_err(
        C::AdvanceCarePlan,
        json!({}),
        "(body)",
        "give at least one of",
    );
    assert_err(
        C::AdvanceCarePlan,
        json!({"recorded_on": "2024-01-01", "review_date": "2025-01-01"}),
        "(body)",
        "give at least one of",
    );
    assert_err(
        C::Documents,
        json!({"title": "x", "data_base64": "aGVsbG8="}),
        "content_type",
        "is required when data_base64",
    );
    assert_err(
        C::Documents,
        json!({"title": "x", "content_type": "text/plain", "data_base64": "aGVsbG8"}),
        "data_base64",
        "base64",
    );
    assert_err(
        C::Documents,
        json!({"title": "x", "content_type": "text/plain", "data_base64": "aGVs\nbG8="}),
        "data_base64",
        "base64",
    );
    assert_err(
        C::Documents,
        json!({"title": "x", "content_type": "pdf"}),
        "content_type",
        "MIME type",
    );
    assert_err(
        C::Documents,
        json!({"title": "x", "url": "letters/1.pdf"}),
        "url",
        "absolute URI",
    );
    assert!(
        EntryBody::from_json(
            C::Documents,
            &json!({"title": "x", "content_type": "text/plain; charset=utf-8"})
        )
        .is_ok()
    );
    assert_err(
        C::Demographics,
        json!({"name": "x", "email": "edith.example.org"}),
        "email",
        "email address",
    );
    assert_err(
        C::Carers,
        json!({"name": "x", "relationship": "y", "email": "a@b@c"}),
        "email",
        "email address",
    );
    assert_err(
        C::Demographics,
        json!({"name": "x", "nhs_number": "943 476 5918"}),
        "nhs_number",
        "check digit",
    );
    assert_err(
        C::Demographics,
        json!({"name": "x", "nhs_number": "943 476 591"}),
        "nhs_number",
        "10 digits, found 9",
    );
    assert_err(
        C::SocialCareSupportPlan,
        json!({"title": "x", "personal_budget_gbp": -1}),
        "personal_budget_gbp",
        "negative",
    );
}
