//! temporary stub
#![allow(missing_docs)]
use crate::section::SectionClass;
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{class} entry: {field}: {problem}")]
pub struct SchemaError {
    pub class: SectionClass,
    pub field: String,
    pub problem: String,
}
#[derive(Debug, Clone, PartialEq)]
pub struct EntryBody(SectionClass, serde_json::Value);
impl EntryBody {
    pub fn from_json(class: SectionClass, v: &serde_json::Value) -> Result<EntryBody, SchemaError> {
        if !v.is_object() {
            return Err(SchemaError {
                class,
                field: "(body)".into(),
                problem: "not an object".into(),
            });
        }
        if class == SectionClass::Notes && v.get("text").and_then(|t| t.as_str()).is_none() {
            return Err(SchemaError {
                class,
                field: "text".into(),
                problem: "missing".into(),
            });
        }
        Ok(EntryBody(class, v.clone()))
    }
    pub fn to_json(&self) -> serde_json::Value {
        self.1.clone()
    }
    pub fn summary(&self) -> String {
        String::new()
    }
}
