//! The consent ledger: every item that says who may do what with a record, and what a node
//! knows about the parties it deals with, as types, with every key spelled here and nowhere
//! else.
//!
//! Items live in three places:
//!
//! | place | key | value | meaning |
//! |---|---|---|---|
//! | auth document | `grant/<grant id>` | [`RecordedGrant`] | a grant the patient issued (every holder can check every other's authority) |
//! | auth document | `revoke/<grant id>` | [`RevokeItem`] | that grant revoked, with the record root's signature |
//! | auth document | `device/<peer>` | a device certificate | one of the patient's devices ([`crate::record`]) |
//! | auth document | `device-removed/<peer>` | when | a device removed ([`crate::record`]) |
//! | auth document | `rotation/<…>` | — | a key rotation happened ([`crate::record`]) |
//! | auth document | `review/<bundle hash>` | the patient's verdict | on a held write ([`crate::record`]) |
//! | auth document | `relay/<peer>` | [`RelayItem`] | an organisation relay that keeps the record (encrypted) reachable, and its addresses |
//! | auth document | `emergency/<organisation>/<arranged at>` | [`ArrangementItem`] | emergency (break-glass) access the patient arranged with an organisation |
//! | auth document | `emergency-cancelled/<organisation>/<arranged at>` | when | that arrangement cancelled |
//! | auth document | `emergency-rotated/<use id>` | when | the sections an emergency use opened moved to new keys after it ended |
//! | patient's ledger section | `grant/<grant id>` | [`IssuedGrant`] | the details of a grant: to whom, for which request |
//! | patient's ledger section | `request/<request id>` | [`RequestItem`] | an access request received |
//! | patient's ledger section | `decision/<request id>` | [`DecisionItem`] | the patient's answer to it |
//! | patient's ledger section | `trust/<organisation peer>` | [`TrustItem`] | an organisation whose credentials the patient trusts |
//! | patient's ledger section | `consent/…`, `contribution/…` | [`crate::extract`] | research and planning choices, contributions |
//! | audit section | `a/<writer>/<seq>` | a signed [`crate::audit::SignedEvent`], base64 | one event of one writer's audit log (the patient's devices' receipts, professionals' reports) |
//! | node (local item) | `audit/<record>/<seq>` | a signed [`crate::audit::SignedEvent`], bytes | this node's own audit journal for the record |
//! | node (local item) | `audit-head/<record>` | seq and hash | the newest event of this node's journal for the record |
//! | node (local item) | `audit-sent/<record>` | seq | how far the journal reached the patient's audit log (acknowledged by the patient's node, or collected by this patient device) |
//! | node (local item) | `break-glass/<record>` | [`HeldEmergency`] | an emergency use this node's user signed for a record, and their credential |
//! | node (local item) | `proxy-request/<record>/<request id>` | [`ProxyRequestItem`] | an access request this node's user, the patient's proxy, received for the record, and their answer |
//! | node (local item) | `grant/<record>/<grant id>` | the chain, bytes | a grant this node holds (accepted) |
//! | node (local item) | `revoked/<record>/<grant id>` | a signed [`Revocation`](crate::grant::Revocation), bytes | a revocation of a held grant, learnt from the patient's node |
//! | node (local item) | `credential/<hash>` | the credential's token | an organisation credential this node holds |
//! | node (local item) | `peer/<peer>` | [`PeerAddrs`] | addresses of a known peer |
//! | node (local item) | `net/listen` | [`PeerAddrs`] | the addresses this node's daemon last listened on |
//! | relay node (local item) | `hosted/<blinded record id>` | `hearth_sync::relay::Hosted` | a record this relay keeps, and the patient's signed access list |
//! | relay node (local item) | `hosted-used/<blinded record id>` | bytes, 8 bytes big-endian | bytes of bundles the relay keeps of the record, against its quota (apart from `hosted/`, so that a push does not write the list and wraps again) |
//! | relay node (local item) | `hosted-supplied/<blinded record id>` | version and time, 8 bytes big-endian each | the newest version of the patient's list the relay adopted and when (apart from `hosted/`, so that a list signed afresh but saying the same does not write the list and wraps again) |
//! | relay node (local item) | `hosted-count` | count, 8 bytes big-endian | how many `hosted/` items there are (moved in their commits: [`crate::record::LocalCount`]) |
//! | relay node (local item) | `letter/<mailbox>/<time>-<id>` | a sealed letter | a mailbox letter waiting for its recipient (`r-<blinded record>` or `p-<peer>`) |
//! | relay node (local item) | `ig-use/<use id>` | [`IgUseItem`] | an emergency use one of the organisation's professionals had it log, for its IG review |
//! | relay node (local item) | `ig-use-count` | count, 8 bytes big-endian | how many `ig-use/` items there are (moved in their commits: [`crate::record::LocalCount`]) |
//! | relay node (local item) | `relay-audit/<record>/<writer>/<seq>` | a signed [`crate::audit::SignedEvent`], bytes | a grantee's audit event left with the relay for the patient's devices (deleted once they acknowledge it) |
//! | relay node (local item) | `relay-audit-acked/<record>/<writer>` | seq | how far the patient's devices acknowledged that grantee's events (told to the grantee) |
//! | node (local item) | `outbox/<relay>/<id>` | a sealed letter | a letter waiting to be left at that relay |
//! | node (local item) | `ack/<relay>/<id>` | — | a letter collected from that relay, to acknowledge |
//! | node (local item) | `inbox/<id>` | a sealed letter | a letter collected, not yet opened |
//! | node (local item) | `asked/<record>/<relay>` | [`PeerAddrs`] | a relay this node left an access request for the record at (it collects the answer there) |
//! | node (local item) | `found/<record>/<relay>` | [`PeerAddrs`] | a relay the relays' network said keeps the record (`hearth relay find`) |
//!
//! The auth document is shared with every holder of the record; the ledger section is the
//! patient's alone; local items never leave the node. [`Key`] builds and parses every key; the
//! typed queries over a record and a vault are in `record::ledger` ([`crate::record`]'s
//! `OpenRecord` and `Vault` methods such as `revoked_grants`, `recorded_chains`,
//! `held_chains`, `trusted_orgs`). The items' types are in `items.rs`.

mod items;
pub use items::*;

use crate::grant::GrantId;
use crate::ids::{PeerKey, RecordId};

/// The key of a ledger item. Each variant is one kind of item; [`Key::text`] spells it and
/// [`Kind::prefix`] the prefix that lists all items of a kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key<'a> {
    /// Auth document: a grant the patient issued.
    RecordedGrant(&'a GrantId),
    /// Auth document: a revocation.
    Revoke(&'a GrantId),
    /// Auth document: a device certificate.
    Device(&'a PeerKey),
    /// Auth document: a removed device.
    DeviceRemoved(&'a PeerKey),
    /// Auth document: a key rotation, by its number (six digits, so keys sort in order).
    Rotation(usize),
    /// Auth document: the patient's verdict on a held write, by the bundle's hash (hex).
    Review(&'a str),
    /// Auth document: a relay that keeps the record.
    Relay(&'a PeerKey),
    /// Ledger section: the details of an issued grant.
    IssuedGrant(&'a GrantId),
    /// Ledger section: an access request.
    Request(&'a str),
    /// Ledger section: the decision on a request.
    Decision(&'a str),
    /// Ledger section: a trusted organisation.
    Trust(&'a PeerKey),
    /// Local: a held grant chain.
    HeldGrant(&'a RecordId, &'a GrantId),
    /// Local: a learnt revocation of a held grant.
    LearntRevocation(&'a RecordId, &'a GrantId),
    /// Local: a credential, by its hash.
    Credential(&'a [u8; 32]),
    /// Local: a known peer's addresses.
    Peer(&'a PeerKey),
    /// Local: the addresses this node last listened on.
    Listen,
    /// Relay node, local: a record it keeps, by blinded id (hex).
    Hosted(&'a str),
    /// Relay node, local: how many records it keeps.
    HostedCount,
    /// Relay node, local: bytes of bundles it keeps of a record, by blinded id (hex).
    HostedUsed(&'a str),
    /// Relay node, local: the newest list version it adopted of a record, and when, by
    /// blinded id (hex).
    HostedSupplied(&'a str),
    /// Relay node, local: a mailbox letter, by mailbox and a sortable id.
    Letter(&'a str, &'a str),
    /// Local: a letter waiting to be left at a relay.
    Outbox(&'a PeerKey, &'a str),
    /// Local: a letter collected from a relay, to acknowledge.
    Ack(&'a PeerKey, &'a str),
    /// Local: a letter collected, not yet opened.
    Inbox(&'a str),
    /// Local: a relay this node left an access request for a record at.
    Asked(&'a RecordId, &'a PeerKey),
    /// Local: a relay found keeping a record on the relays' network.
    Found(&'a RecordId, &'a PeerKey),
    /// Audit section: one writer's event, by number.
    AuditEvent(&'a PeerKey, u64),
    /// Auth document: an emergency arrangement with an organisation, by when it was made.
    Arrangement(&'a PeerKey, i64),
    /// Auth document: that arrangement cancelled.
    ArrangementCancelled(&'a PeerKey, i64),
    /// Auth document: the keys an emergency use opened were moved, by the use's id (hex).
    EmergencyRotated(&'a str),
    /// Local: an emergency use this node's user signed for a record.
    HeldEmergency(&'a RecordId),
    /// Local: an access request this node's user received as the patient's proxy.
    ProxyRequest(&'a RecordId, &'a str),
    /// Organisation (relay) node, local: a logged emergency use, by its id (hex).
    IgUse(&'a str),
    /// Organisation (relay) node, local: how many emergency uses it logged.
    IgUseCount,
    /// Relay node, local: a grantee's audit event left for the patient's devices.
    RelayedAudit(&'a RecordId, &'a PeerKey, u64),
    /// Relay node, local: how far the patient's devices acknowledged a grantee's events.
    RelayedAuditAcked(&'a RecordId, &'a PeerKey),
    /// Local: an event of this node's own audit journal for a record.
    Journal(&'a RecordId, u64),
    /// Local: the newest event of this node's journal for a record.
    JournalHead(&'a RecordId),
    /// Local: how far this node's journal for a record reached the patient's audit log.
    JournalSent(&'a RecordId),
    /// Local: this node's sealed summary of a record it holds (name and sections, for
    /// listing; `record::summary`).
    Summary(&'a RecordId),
}

/// The kinds of item, for listing: the prefix of every key of that kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `grant/` in the auth document.
    RecordedGrant,
    /// `revoke/`.
    Revoke,
    /// `device/`.
    Device,
    /// `device-removed/`.
    DeviceRemoved,
    /// `rotation/`.
    Rotation,
    /// `review/`.
    Review,
    /// `relay/` in the auth document.
    Relay,
    /// `grant/` in the ledger section.
    IssuedGrant,
    /// `request/`.
    Request,
    /// `decision/`.
    Decision,
    /// `trust/`.
    Trust,
    /// `grant/<record>/` locally (all records: [`Kind::prefix`]; one: [`held_prefix`]).
    HeldGrant,
    /// `revoked/` locally.
    LearntRevocation,
    /// `credential/`.
    Credential,
    /// `peer/`.
    Peer,
    /// `net/listen` (a single item).
    Listen,
    /// `hosted/` (relay nodes).
    Hosted,
    /// `hosted-count` (relay nodes; a single item).
    HostedCount,
    /// `hosted-used/` (relay nodes).
    HostedUsed,
    /// `hosted-supplied/` (relay nodes).
    HostedSupplied,
    /// `letter/` (relay nodes).
    Letter,
    /// `outbox/`.
    Outbox,
    /// `ack/`.
    Ack,
    /// `inbox/`.
    Inbox,
    /// `asked/`.
    Asked,
    /// `found/`.
    Found,
    /// `a/` in the audit section (one writer: [`audit_writer_prefix`]).
    AuditEvent,
    /// `emergency/` in the auth document.
    Arrangement,
    /// `emergency-cancelled/`.
    ArrangementCancelled,
    /// `emergency-rotated/`.
    EmergencyRotated,
    /// `break-glass/` locally.
    HeldEmergency,
    /// `proxy-request/` locally.
    ProxyRequest,
    /// `ig-use/` (organisation nodes).
    IgUse,
    /// `ig-use-count` (organisation nodes; a single item).
    IgUseCount,
    /// `relay-audit/` (relay nodes; one record: [`relayed_audit_prefix`]).
    RelayedAudit,
    /// `relay-audit-acked/` (relay nodes).
    RelayedAuditAcked,
    /// `audit/` locally (one record: [`journal_prefix`]).
    Journal,
    /// `audit-head/`.
    JournalHead,
    /// `audit-sent/`.
    JournalSent,
    /// `summary/`.
    Summary,
}

impl Kind {
    /// The prefix every key of this kind starts with.
    pub const fn prefix(self) -> &'static str {
        match self {
            Kind::RecordedGrant | Kind::IssuedGrant | Kind::HeldGrant => "grant/",
            Kind::Revoke => "revoke/",
            Kind::Device => "device/",
            Kind::DeviceRemoved => "device-removed/",
            Kind::Rotation => "rotation/",
            Kind::Review => "review/",
            Kind::Relay => "relay/",
            Kind::Hosted => "hosted/",
            Kind::HostedCount => "hosted-count",
            Kind::HostedUsed => "hosted-used/",
            Kind::HostedSupplied => "hosted-supplied/",
            Kind::Letter => "letter/",
            Kind::Outbox => "outbox/",
            Kind::Ack => "ack/",
            Kind::Inbox => "inbox/",
            Kind::Asked => "asked/",
            Kind::Found => "found/",
            Kind::AuditEvent => "a/",
            Kind::Arrangement => "emergency/",
            Kind::ArrangementCancelled => "emergency-cancelled/",
            Kind::EmergencyRotated => "emergency-rotated/",
            Kind::HeldEmergency => "break-glass/",
            Kind::ProxyRequest => "proxy-request/",
            Kind::IgUse => "ig-use/",
            Kind::IgUseCount => "ig-use-count",
            Kind::RelayedAudit => "relay-audit/",
            Kind::RelayedAuditAcked => "relay-audit-acked/",
            Kind::Journal => "audit/",
            Kind::JournalHead => "audit-head/",
            Kind::JournalSent => "audit-sent/",
            Kind::Summary => "summary/",
            Kind::Request => "request/",
            Kind::Decision => "decision/",
            Kind::Trust => "trust/",
            Kind::LearntRevocation => "revoked/",
            Kind::Credential => "credential/",
            Kind::Peer => "peer/",
            Kind::Listen => "net/listen",
        }
    }

    /// What follows the prefix in `key`, if `key` is of this kind.
    pub fn id_in(self, key: &str) -> Option<&str> {
        key.strip_prefix(self.prefix())
    }
}

impl Key<'_> {
    /// The key's text.
    pub fn text(&self) -> String {
        let (kind, rest) = match self {
            Key::RecordedGrant(g) => (Kind::RecordedGrant, g.to_string()),
            Key::Revoke(g) => (Kind::Revoke, g.to_string()),
            Key::Device(p) => (Kind::Device, p.to_string()),
            Key::DeviceRemoved(p) => (Kind::DeviceRemoved, p.to_string()),
            Key::Rotation(n) => (Kind::Rotation, format!("{n:06}")),
            Key::Review(h) => (Kind::Review, (*h).to_string()),
            Key::IssuedGrant(g) => (Kind::IssuedGrant, g.to_string()),
            Key::Request(r) => (Kind::Request, (*r).to_string()),
            Key::Decision(r) => (Kind::Decision, (*r).to_string()),
            Key::Trust(p) => (Kind::Trust, p.to_string()),
            Key::HeldGrant(r, g) => (Kind::HeldGrant, format!("{r}/{g}")),
            Key::LearntRevocation(r, g) => (Kind::LearntRevocation, format!("{r}/{g}")),
            Key::Credential(h) => (Kind::Credential, data_encoding::HEXLOWER.encode(*h)),
            Key::Peer(p) => (Kind::Peer, p.to_string()),
            Key::Listen => (Kind::Listen, String::new()),
            Key::Relay(p) => (Kind::Relay, p.to_string()),
            Key::Hosted(b) => (Kind::Hosted, (*b).to_string()),
            Key::HostedCount => (Kind::HostedCount, String::new()),
            Key::HostedUsed(b) => (Kind::HostedUsed, (*b).to_string()),
            Key::HostedSupplied(b) => (Kind::HostedSupplied, (*b).to_string()),
            Key::Letter(m, id) => (Kind::Letter, format!("{m}/{id}")),
            Key::Outbox(r, id) => (Kind::Outbox, format!("{r}/{id}")),
            Key::Ack(r, id) => (Kind::Ack, format!("{r}/{id}")),
            Key::Inbox(id) => (Kind::Inbox, (*id).to_string()),
            Key::Asked(rec, r) => (Kind::Asked, format!("{rec}/{r}")),
            Key::Found(rec, r) => (Kind::Found, format!("{rec}/{r}")),
            Key::AuditEvent(w, seq) => (Kind::AuditEvent, format!("{w}/{seq:020}")),
            Key::Arrangement(o, at) => (Kind::Arrangement, format!("{o}/{at:016}")),
            Key::ArrangementCancelled(o, at) => {
                (Kind::ArrangementCancelled, format!("{o}/{at:016}"))
            }
            Key::EmergencyRotated(u) => (Kind::EmergencyRotated, (*u).to_string()),
            Key::HeldEmergency(r) => (Kind::HeldEmergency, r.to_string()),
            Key::ProxyRequest(rec, q) => (Kind::ProxyRequest, format!("{rec}/{q}")),
            Key::IgUse(id) => (Kind::IgUse, (*id).to_string()),
            Key::IgUseCount => (Kind::IgUseCount, String::new()),
            Key::RelayedAudit(rec, w, seq) => (Kind::RelayedAudit, format!("{rec}/{w}/{seq:020}")),
            Key::RelayedAuditAcked(rec, w) => (Kind::RelayedAuditAcked, format!("{rec}/{w}")),
            Key::Journal(rec, seq) => (Kind::Journal, format!("{rec}/{seq:020}")),
            Key::JournalHead(rec) => (Kind::JournalHead, rec.to_string()),
            Key::JournalSent(rec) => (Kind::JournalSent, rec.to_string()),
            Key::Summary(rec) => (Kind::Summary, rec.to_string()),
        };
        format!("{}{rest}", kind.prefix())
    }
}

/// The prefix of the grantees' audit events a relay keeps for `record` (of one writer, with
/// `writer`).
pub fn relayed_audit_prefix(record: &RecordId, writer: Option<&PeerKey>) -> String {
    match writer {
        Some(w) => format!("{}{record}/{w}/", Kind::RelayedAudit.prefix()),
        None => format!("{}{record}/", Kind::RelayedAudit.prefix()),
    }
}

/// The prefix of the grants this node holds for `record`.
pub fn held_prefix(record: &RecordId) -> String {
    format!("{}{record}/", Kind::HeldGrant.prefix())
}

/// The prefix of one writer's events in the audit section.
pub fn audit_writer_prefix(writer: &PeerKey) -> String {
    format!("{}{writer}/", Kind::AuditEvent.prefix())
}

/// The writer and number an audit-section key names.
pub fn audit_event_of(key: &str) -> Option<(PeerKey, u64)> {
    let (w, seq) = Kind::AuditEvent.id_in(key)?.split_once('/')?;
    Some((w.parse().ok()?, seq.parse().ok()?))
}

/// The prefix of this node's journal for `record`.
pub fn journal_prefix(record: &RecordId) -> String {
    format!("{}{record}/", Kind::Journal.prefix())
}

/// The prefix of the revocations this node learnt for `record`.
pub fn learnt_prefix(record: &RecordId) -> String {
    format!("{}{record}/", Kind::LearntRevocation.prefix())
}

/// The record and grant a held-grant (or learnt-revocation) key of `kind` names.
pub fn record_and_grant(kind: Kind, key: &str) -> Option<(RecordId, GrantId)> {
    let (r, g) = kind.id_in(key)?.split_once('/')?;
    Some((r.parse().ok()?, g.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    #[test]
    fn keys_round_trip_and_kinds_do_not_clash() {
        let r = RecordId([1; 32]);
        let g = GrantId(serde_bytes::ByteArray::new([2; 32]));
        let held = Key::HeldGrant(&r, &g).text();
        assert!(held.starts_with(&held_prefix(&r)));
        assert_eq!(record_and_grant(Kind::HeldGrant, &held), Some((r, g)));
        let learnt = Key::LearntRevocation(&r, &g).text();
        assert!(learnt.starts_with(&learnt_prefix(&r)));
        assert_eq!(
            record_and_grant(Kind::LearntRevocation, &learnt),
            Some((r, g))
        );
        assert_eq!(
            Kind::Revoke.id_in(&Key::Revoke(&g).text()),
            Some(g.to_string().as_str())
        );
        // `revoke/` and `revoked/` live in different places, but must not prefix each other's
        // listings where they share one: neither is a prefix of the other's keys.
        assert!(
            !Key::Revoke(&g)
                .text()
                .starts_with(Kind::LearntRevocation.prefix())
        );
        assert!(!learnt.starts_with(Kind::Revoke.prefix()));
        assert!(
            !Key::DeviceRemoved(&PeerKey([3; 32]))
                .text()
                .starts_with(Kind::Device.prefix())
        );
    }

    #[test]
    fn keys_keep_their_stored_spelling() {
        // Stores written by earlier versions hold these keys: their text must not change.
        let p = PeerKey([3; 32]);
        let r = RecordId([1; 32]);
        let g = GrantId(serde_bytes::ByteArray::new([2; 32]));
        assert_eq!(Key::Rotation(3).text(), "rotation/000003");
        assert_eq!(Key::Review("ab12").text(), "review/ab12");
        assert_eq!(Key::Device(&p).text(), format!("device/{p}"));
        assert_eq!(Key::DeviceRemoved(&p).text(), format!("device-removed/{p}"));
        assert_eq!(Key::RecordedGrant(&g).text(), format!("grant/{g}"));
        assert_eq!(Key::IssuedGrant(&g).text(), format!("grant/{g}"));
        assert_eq!(Key::Revoke(&g).text(), format!("revoke/{g}"));
        assert_eq!(Key::Request("q1").text(), "request/q1");
        assert_eq!(Key::Decision("q1").text(), "decision/q1");
        assert_eq!(Key::Trust(&p).text(), format!("trust/{p}"));
        assert_eq!(Key::HeldGrant(&r, &g).text(), format!("grant/{r}/{g}"));
        assert_eq!(
            Key::LearntRevocation(&r, &g).text(),
            format!("revoked/{r}/{g}")
        );
        assert_eq!(
            Key::Credential(&[0xab; 32]).text(),
            format!("credential/{}", "ab".repeat(32))
        );
        assert_eq!(Key::Peer(&p).text(), format!("peer/{p}"));
        assert_eq!(Key::Listen.text(), "net/listen");
        assert_eq!(Key::HostedCount.text(), "hosted-count");
        assert!(Kind::Hosted.id_in(&Key::HostedCount.text()).is_none());
        assert!(Kind::Hosted.id_in(&Key::HostedUsed("ab").text()).is_none());
        assert_eq!(Key::HostedUsed("ab").text(), "hosted-used/ab");
        assert!(
            Kind::Hosted
                .id_in(&Key::HostedSupplied("ab").text())
                .is_none()
        );
        assert_eq!(Key::HostedSupplied("ab").text(), "hosted-supplied/ab");
        assert_eq!(Key::IgUseCount.text(), "ig-use-count");
        assert!(Kind::IgUse.id_in(&Key::IgUseCount.text()).is_none());
        assert_eq!(Key::Relay(&p).text(), format!("relay/{p}"));
        assert_eq!(Key::Hosted("ab").text(), "hosted/ab");
        assert_eq!(Key::Letter("p-x", "7-x").text(), "letter/p-x/7-x");
        assert_eq!(Key::Outbox(&p, "ab").text(), format!("outbox/{p}/ab"));
        assert_eq!(Key::Ack(&p, "ab").text(), format!("ack/{p}/ab"));
        assert_eq!(Key::Inbox("ab").text(), "inbox/ab");
        assert_eq!(Key::Asked(&r, &p).text(), format!("asked/{r}/{p}"));
        assert_eq!(Key::Found(&r, &p).text(), format!("found/{r}/{p}"));
        assert_eq!(
            Key::AuditEvent(&p, 7).text(),
            format!("a/{p}/00000000000000000007")
        );
        assert_eq!(audit_event_of(&Key::AuditEvent(&p, 7).text()), Some((p, 7)));
        assert_eq!(
            Key::Journal(&r, 7).text(),
            format!("audit/{r}/00000000000000000007")
        );
        assert!(Key::Journal(&r, 7).text().starts_with(&journal_prefix(&r)));
        assert_eq!(Key::Summary(&r).text(), format!("summary/{r}"));
        assert!(
            !Key::JournalHead(&r)
                .text()
                .starts_with(Kind::Journal.prefix())
        );
        assert!(
            !Key::JournalSent(&r)
                .text()
                .starts_with(Kind::Journal.prefix())
        );
    }

    #[test]
    fn items_keep_their_stored_json_shape() {
        let d = DecisionItem {
            decision: Answer::Approved,
            at: Timestamp::from_millis(5),
            grant: Some("g".into()),
            reason: None,
            by: None,
        };
        let json: serde_json::Value = serde_json::from_str(&d.to_json()).unwrap();
        assert_eq!(json["decision"], "approved");
        assert_eq!(json["grant"], "g");
        assert!(json.get("reason").is_none());
        assert_eq!(
            DecisionItem::from_json(&d.to_json()).unwrap().decision,
            Answer::Approved
        );
        let mut p = PeerAddrs::default();
        for i in 0..10 {
            p.put_first(format!("/ip4/127.0.0.1/tcp/{i}"));
        }
        p.put_first("/ip4/127.0.0.1/tcp/3".into());
        assert_eq!(p.addrs.len(), MAX_PEER_ADDRS);
        assert_eq!(p.addrs[0], "/ip4/127.0.0.1/tcp/3");
        assert_eq!(p.addrs.iter().filter(|a| a.ends_with("/3")).count(), 1);
        assert!(PeerAddrs::from_bytes(b"not json").addrs.is_empty());
    }
}
