//! Care resources from care entries: CarePlan (care, support and advance care plans),
//! QuestionnaireResponse, RelatedPerson, and the documents and notes.

use super::{
    FieldExtension, PATIENT, ext, field_extensions, notes, period, put, put_concept, put_value,
    subject, telecom, text_of,
};
use crate::entry::schema::{
    AdvanceCarePlan, CarePlan, Carer, Document, Note, PlanStatus, SocialCareAssessment, SupportPlan,
};
use crate::section::SectionClass;
use serde_json::{Map, Value, json};

/// What the three kinds of plan (care, support, advance care) say as a FHIR CarePlan.
pub(super) struct Plan<'a> {
    class: SectionClass,
    status: Option<PlanStatus>,
    /// `CarePlan.category`, and the title when the plan has none.
    category: Option<&'static str>,
    title: Option<&'a str>,
    description: Option<&'a str>,
    start: Option<&'a String>,
    end: Option<&'a String>,
    /// Each activity in words.
    activities: Vec<String>,
    /// Each goal (or need met) in words.
    goals: &'a [String],
    note: Option<&'a str>,
    extensions: Vec<FieldExtension>,
}

pub(super) fn care_plan(p: &CarePlan) -> Plan<'_> {
    Plan {
        class: SectionClass::CarePlan,
        status: p.status,
        category: None,
        title: Some(&p.title),
        description: p.description.as_deref(),
        start: p.start.as_ref(),
        end: p.end.as_ref(),
        activities: p.activities.clone(),
        goals: &p.goals,
        note: None,
        extensions: vec![ext!(p.review_date as date)],
    }
}

pub(super) fn support_plan(p: &SupportPlan) -> Plan<'_> {
    let services = p.services.iter().map(|s| {
        [
            Some(&s.name),
            s.provider.as_ref(),
            s.frequency.as_ref(),
            s.funded_by.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect::<Vec<&str>>()
        .join("; ")
    });
    Plan {
        class: SectionClass::SocialCareSupportPlan,
        status: p.status,
        category: Some("Care and support plan"),
        title: Some(&p.title),
        description: None,
        start: p.start.as_ref(),
        end: p.end.as_ref(),
        activities: services.collect(),
        goals: &p.needs,
        note: p.note.as_deref(),
        extensions: vec![ext!(p.personal_budget_gbp), ext!(p.review_date as date)],
    }
}

pub(super) fn advance_care_plan(p: &AdvanceCarePlan) -> Plan<'_> {
    Plan {
        class: SectionClass::AdvanceCarePlan,
        status: None,
        category: Some("Advance care plan"),
        title: None,
        description: p.statement.as_deref(),
        start: None,
        end: None,
        activities: Vec::new(),
        goals: &[],
        note: p.note.as_deref(),
        extensions: vec![
            ext!(p.dnacpr),
            ext!(p.preferred_place_of_care),
            ext!(p.preferred_place_of_death),
            ext!(p.lasting_power_of_attorney),
            ext!(p.recorded_on as date),
            ext!(p.review_date as date),
        ],
    }
}

pub(super) fn plan(r: &mut Map<String, Value>, p: Plan<'_>) {
    r.insert("resourceType".into(), json!("CarePlan"));
    let status = match p.status {
        Some(s) => s.as_str(),
        None if p.class == SectionClass::AdvanceCarePlan => "active",
        None => "unknown",
    };
    r.insert("status".into(), json!(status));
    r.insert("intent".into(), json!("plan"));
    put(r, "category", p.category.map(|c| json!([{"text": c}])));
    let title = p.title.or(p.category).unwrap_or("Care plan");
    r.insert("title".into(), json!(title));
    put_value(r, "description", &p.description);
    r.insert("subject".into(), subject());
    put(r, "period", period(p.start, p.end));
    let activities: Vec<Value> = p
        .activities
        .iter()
        .map(|a| json!({"detail": {"status": "unknown", "description": a}}))
        .collect();
    if !activities.is_empty() {
        r.insert("activity".into(), Value::Array(activities));
    }
    if !p.goals.is_empty() {
        let contained: Vec<Value> = p
            .goals
            .iter()
            .enumerate()
            .map(|(i, g)| {
                json!({"resourceType": "Goal", "id": format!("goal{i}"), "lifecycleStatus": "active",
                       "description": {"text": g}, "subject": {"reference": PATIENT}})
            })
            .collect();
        let refs: Vec<Value> = (0..p.goals.len())
            .map(|i| json!({"reference": format!("#goal{i}")}))
            .collect();
        r.insert("contained".into(), Value::Array(contained));
        r.insert("goal".into(), Value::Array(refs));
    }
    put(r, "note", notes(p.note, &[]));
    put(r, "extension", field_extensions(p.class, &p.extensions));
}

pub(super) fn assessment(r: &mut Map<String, Value>, a: &SocialCareAssessment) {
    r.insert("resourceType".into(), json!("QuestionnaireResponse"));
    r.insert("status".into(), json!("completed"));
    r.insert("subject".into(), subject());
    r.insert("authored".into(), json!(a.date));
    put(
        r,
        "author",
        a.assessor.as_ref().map(|x| json!({"display": x})),
    );
    let mut items = Vec::new();
    let mut item = |id: &str, text: &str, answer: Value| {
        items.push(json!({"linkId": id, "text": text, "answer": [answer]}));
    };
    item(
        "assessment-type",
        "Assessment type",
        json!({"valueString": a.assessment_type}),
    );
    for (i, n) in a.needs.iter().enumerate() {
        let mut words = n
            .description
            .clone()
            .unwrap_or_else(|| "need identified".to_owned());
        if let Some(e) = n.eligible {
            words.push_str(if e { " (eligible)" } else { " (not eligible)" });
        }
        item(
            &format!("need-{i}"),
            &n.domain,
            json!({"valueString": words}),
        );
    }
    if let Some(e) = a.eligible {
        item("eligible", "Eligible needs", json!({"valueBoolean": e}));
    }
    if let Some(t) = &a.outcome {
        item("outcome", "Outcome", json!({"valueString": t}));
    }
    if let Some(t) = &a.summary {
        item("summary", "Summary", json!({"valueString": t}));
    }
    r.insert("item".into(), Value::Array(items));
}

pub(super) fn carer(r: &mut Map<String, Value>, c: &Carer) {
    r.insert("resourceType".into(), json!("RelatedPerson"));
    r.insert("patient".into(), subject());
    r.insert("relationship".into(), json!([{"text": c.relationship}]));
    r.insert("name".into(), json!([{"text": c.name}]));
    put(
        r,
        "telecom",
        telecom(c.phone.as_deref(), c.email.as_deref()),
    );
    put(
        r,
        "extension",
        field_extensions(
            SectionClass::Carers,
            &[
                ext!(c.lives_with_patient),
                ext!(c.main_carer),
                ext!(c.lasting_power_of_attorney),
                ext!(c.note),
            ],
        ),
    );
}

pub(super) fn note(r: &mut Map<String, Value>, n: &Note, src_type: Option<&str>) {
    match src_type {
        Some("QuestionnaireResponse") => {
            r.insert("resourceType".into(), json!("QuestionnaireResponse"));
            r.insert("status".into(), json!("completed"));
            r.insert("subject".into(), subject());
            let title = n.title.as_deref().unwrap_or("Note");
            r.insert(
                "item".into(),
                json!([{"linkId": "note", "text": title, "answer": [{"valueString": n.text}]}]),
            );
        }
        Some("CareTeam") => {
            r.insert("resourceType".into(), json!("CareTeam"));
            put_value(r, "name", &n.title);
            r.insert("subject".into(), subject());
            r.insert("note".into(), json!([{"text": n.text}]));
        }
        _ => {
            r.insert("resourceType".into(), json!("DocumentReference"));
            r.insert("status".into(), json!("current"));
            put(r, "type", text_of(n.category.as_ref()));
            put_value(r, "description", &n.title);
            r.insert("subject".into(), subject());
            let mut att = Map::new();
            att.insert("contentType".into(), json!("text/plain; charset=utf-8"));
            att.insert(
                "data".into(),
                json!(data_encoding::BASE64.encode(n.text.as_bytes())),
            );
            put_value(&mut att, "title", &n.title);
            r.insert("content".into(), json!([{"attachment": att}]));
        }
    }
}

pub(super) fn report(r: &mut Map<String, Value>, d: &Document) {
    r.insert("resourceType".into(), json!("DiagnosticReport"));
    r.insert("status".into(), json!("final"));
    put_concept(r, "code", &d.code, &d.title);
    r.insert("subject".into(), subject());
    put_value(r, "effectiveDateTime", &d.date);
    put_value(r, "conclusion", &d.description);
    if let Some(att) = attachment(d) {
        r.insert("presentedForm".into(), json!([att]));
    }
}

pub(super) fn document(r: &mut Map<String, Value>, d: &Document) {
    r.insert("resourceType".into(), json!("DocumentReference"));
    r.insert("status".into(), json!("current"));
    put(r, "type", d.code.as_ref().map(|c| json!({"coding": [c]})));
    r.insert("subject".into(), subject());
    put(r, "date", d.date.as_deref().map(|x| json!(to_instant(x))));
    put_value(r, "description", &d.description);
    let mut att = attachment(d).unwrap_or_default();
    att.insert("title".into(), json!(d.title));
    r.insert("content".into(), json!([{"attachment": att}]));
}

/// DocumentReference.date is an instant: a date becomes its first moment in UTC.
fn to_instant(d: &str) -> String {
    match d.len() {
        4 => format!("{d}-01-01T00:00:00Z"),
        7 => format!("{d}-01T00:00:00Z"),
        10 => format!("{d}T00:00:00Z"),
        _ => d.to_owned(),
    }
}

fn attachment(d: &Document) -> Option<Map<String, Value>> {
    let mut a = Map::new();
    put_value(&mut a, "contentType", &d.content_type);
    put_value(&mut a, "data", &d.data_base64);
    put_value(&mut a, "url", &d.url);
    (!a.is_empty()).then_some(a)
}
