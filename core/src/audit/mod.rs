//! The audit log: who did what with a record, as events that each writer signs and
//! hash-chains, so that an edited, dropped, reordered or forged event is detected.
//!
//! Every node keeps its own log per record (its *journal*, node-local items in
//! [`crate::record`]): a patient's device writes an access receipt ([`Action::Served`]) for
//! every session in which it sent record data to someone other than the patient's devices; a
//! professional's node writes what its user read ([`Action::Read`]) and wrote
//! ([`Action::Wrote`]). A professional's node sends its new events to the patient's node in
//! every sync request, with the head of its log; the patient's devices keep every writer's
//! events in the record's audit section ([`crate::ids::SectionId::AUDIT`]), sealed like any
//! section and readable by the patient's devices only.
//!
//! [`verify`] checks a whole log: signatures, numbering from 1 without gaps, the hash links,
//! the heads peers reported, and sessions in which a peer took data without reporting.
//!
//! Honest limits: a writer's log proves what its node chose to record; a node changed not to
//! record reads shows as not reporting (or as missing events), not as silence. An event's
//! time is the writer's clock (a claim), except for receipts, where the writer is the node
//! that served.

mod chain;
mod event;

pub use chain::{Expect, Problem, Verified, verify};
pub use event::{
    Action, AuditError, Authority, EmergencyMark, Event, MAX_ENTRIES, MAX_EVENT_BYTES, MAX_REASON,
    MAX_SECTIONS, MAX_TOKEN, SectionAt, SignedEvent,
};

#[cfg(test)]
mod tests;
