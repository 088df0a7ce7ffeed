//! Letters through relays, on this node's side: what goes out with a request to a relay (the
//! outbox, and acknowledgements of letters collected), what comes back (kept in the inbox and
//! acknowledged with the next request), and opening the inbox: an access request goes into the
//! patient's ledger ([`OpenRecord::receive_request`]), a grant is accepted
//! ([`Vault::accept_grant`]) exactly as `hearth requests add` and `hearth accept` would.

use super::*;
use crate::relay::wire::{Address, Letter, MAX_ACK, MAX_POST};
use crate::relay::{StoreResponse, blind};
use hearth_core::ledger::{Key, Kind, PeerAddrs};
use hearth_core::letter::{self, LetterBody};
use serde_bytes::ByteArray;

/// A letter collected and not yet opened (local item [`Key::Inbox`]).
#[derive(Serialize, serde::Deserialize)]
struct Collected {
    relay: PeerKey,
    letter: Letter,
}

fn hex(id: &[u8; 32]) -> String {
    data_encoding::HEXLOWER.encode(id)
}

/// What opening one letter did, in words (no content).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "what")]
pub enum Opened {
    /// An access request was added to the patient's ledger (its id).
    Request(String),
    /// A grant was accepted (its record).
    Grant(RecordId),
    /// The letter was dropped, and why.
    Dropped(String),
}

impl<'a, S: Store> Local<'a, S> {
    /// Seals `body` to `key` for the mailbox `to` and keeps it in the outbox for `relay`: it
    /// goes with the next request to that relay, and leaves the outbox once the relay took it.
    pub fn send_letter(
        &self,
        relay: &PeerKey,
        to: Address,
        key: &[u8; 32],
        body: &LetterBody,
        rng: &mut impl CryptoRng,
    ) -> Result<(), SyncError> {
        let sealed = letter::seal(key, to.mailbox().as_bytes(), body, rng)
            .map_err(|_| SyncError::Protocol("cannot seal a letter to that key"))?;
        let l = Letter {
            to,
            sealed: ByteBuf::from(sealed),
        };
        let bytes = serde_ipld_dagcbor::to_vec(&l)
            .map_err(|_| SyncError::Protocol("cannot encode a letter"))?;
        self.vault
            .put_local(&Key::Outbox(relay, &hex(&l.id())).text(), &bytes)?;
        Ok(())
    }

    /// What goes to `relay` with the next request: letters from the outbox and
    /// acknowledgements of letters collected.
    pub(super) fn outgoing(&self, relay: &PeerKey) -> (Vec<Letter>, Vec<ByteArray<32>>) {
        let post = self
            .vault
            .local_items(&format!("{}{relay}/", Kind::Outbox.prefix()))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(_, v)| serde_ipld_dagcbor::from_slice(&v).ok())
            .take(MAX_POST)
            .collect();
        let ack = self
            .vault
            .local_items(&format!("{}{relay}/", Kind::Ack.prefix()))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, _)| {
                let id = data_encoding::HEXLOWER
                    .decode(k.rsplit('/').next()?.as_bytes())
                    .ok()?;
                Some(ByteArray::new(<[u8; 32]>::try_from(id).ok()?))
            })
            .take(MAX_ACK)
            .collect();
        (post, ack)
    }

    /// Takes in the letter side of `relay`'s answer: letters it took leave the outbox,
    /// acknowledged ones are forgotten, letters delivered go to the inbox (to acknowledge next
    /// time), and the inbox is opened. Returns what opening did.
    pub(super) fn on_letters(
        &self,
        relay: &PeerKey,
        resp: &StoreResponse,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<Opened>, SyncError> {
        let mut gone: Vec<String> = resp
            .posted
            .iter()
            .map(|id| Key::Outbox(relay, &hex(id)).text())
            .collect();
        gone.extend(resp.acked.iter().map(|id| Key::Ack(relay, &hex(id)).text()));
        self.vault.delete_local(&gone)?;
        for l in &resp.letters {
            let id = hex(&l.id());
            let c = Collected {
                relay: *relay,
                letter: l.clone(),
            };
            let bytes = serde_ipld_dagcbor::to_vec(&c)
                .map_err(|_| SyncError::Protocol("cannot encode a letter"))?;
            self.vault.put_local(&Key::Inbox(&id).text(), &bytes)?;
            self.vault.put_local(&Key::Ack(relay, &id).text(), &[])?;
        }
        self.open_inbox(now, rng)
    }

    /// Opens every letter in the inbox: each is taken in or dropped (with the reason), and
    /// leaves the inbox either way.
    pub fn open_inbox(
        &self,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<Opened>, SyncError> {
        let mut out = Vec::new();
        let mut done = Vec::new();
        for (k, v) in self.vault.local_items(Kind::Inbox.prefix())? {
            done.push(k);
            let opened = match serde_ipld_dagcbor::from_slice::<Collected>(&v) {
                Ok(c) => self.open_letter(&c, now, rng),
                Err(_) => Opened::Dropped("an unreadable letter".into()),
            };
            out.push(opened);
        }
        self.vault.delete_local(&done)?;
        Ok(out)
    }

    fn open_letter(&self, c: &Collected, now: Timestamp, rng: &mut impl CryptoRng) -> Opened {
        let drop = |why: &str| Opened::Dropped(why.to_string());
        let mailbox = c.letter.to.mailbox();
        let secret = match &c.letter.to {
            Address::Record(b) => {
                let mine = self.identity.record_id();
                match (mine, letter::record_inbox_secret(self.identity)) {
                    (Some(r), Some(s)) if blind(&r, &c.relay) == *b => s,
                    _ => return drop("a letter for a record inbox this device does not open"),
                }
            }
            Address::Peer(p) if *p == self.identity.peer() => {
                self.identity.agreement_secret().clone()
            }
            Address::Peer(_) => return drop("a letter for another peer"),
        };
        let Ok(body) = letter::open(&secret, mailbox.as_bytes(), &c.letter.sealed) else {
            return drop("a letter that does not open (damaged, or not sealed to this node)");
        };
        match body {
            LetterBody::Request(token) => {
                let Some(record) = self.identity.record_id() else {
                    return drop("an access request for a node without a record");
                };
                let taken = self
                    .vault
                    .open_record(self.identity, &record)
                    .map_err(|e| e.to_string())
                    .and_then(|mut rec| {
                        // Anyone may write to a record's inbox: what waits for the patient is
                        // bounded, one open request per requester and MAX_PENDING in all.
                        let pending = pending_requesters(&mut rec, now);
                        let from = grant::request::AccessRequest::from_token(&token)
                            .map(|r| r.body().requester.peer)
                            .map_err(|e| e.to_string())?;
                        if pending.contains(&from) {
                            return Err("this requester already has a request waiting".into());
                        }
                        if pending.len() >= MAX_PENDING {
                            return Err(format!(
                                "{MAX_PENDING} requests already wait for an answer"
                            ));
                        }
                        rec.receive_request(&token, now, rng)
                            .map_err(|e| e.to_string())
                    });
                match taken {
                    Ok((rid, _)) => Opened::Request(rid),
                    Err(why) => Opened::Dropped(why),
                }
            }
            LetterBody::Grant(token) => {
                let chain = match grant::chain_from_token(&token) {
                    Ok(c) => c,
                    Err(e) => return Opened::Dropped(e.to_string()),
                };
                match self.vault.accept_grant(self.identity, &chain, now) {
                    Ok(a) => {
                        let _ = self.vault.remember_addresses(&a.addresses);
                        Opened::Grant(a.record)
                    }
                    Err(e) => Opened::Dropped(e.to_string()),
                }
            }
        }
    }

    /// Notes that this node left an access request for `record` at `relay` (reached at
    /// `addrs`): rounds with that relay then collect the answer.
    pub fn asked_at(
        &self,
        record: &RecordId,
        relay: &PeerKey,
        addrs: &PeerAddrs,
    ) -> Result<(), SyncError> {
        self.vault
            .put_local(&Key::Asked(record, relay).text(), &addrs.to_bytes())?;
        Ok(())
    }

    /// Notes that the relays' network says `relay` (reached at `addrs`) keeps `record`: a
    /// grantee then syncs through it too. (Anyone may claim that there; what a relay sends is
    /// checked as any peer's is.)
    pub fn found_at(
        &self,
        record: &RecordId,
        relay: &PeerKey,
        addrs: &PeerAddrs,
    ) -> Result<(), SyncError> {
        self.vault
            .put_local(&Key::Found(record, relay).text(), &addrs.to_bytes())?;
        Ok(())
    }

    /// The relays this node left access requests for `record` at, and those it found keeping
    /// it.
    pub(super) fn noted_relays(&self, record: &RecordId) -> Vec<(PeerKey, PeerAddrs)> {
        let mut out = self.relays_under(Kind::Asked, record);
        out.extend(self.relays_under(Kind::Found, record));
        out
    }

    fn relays_under(&self, kind: Kind, record: &RecordId) -> Vec<(PeerKey, PeerAddrs)> {
        self.vault
            .local_items(&format!("{}{record}/", kind.prefix()))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| {
                let peer = k.rsplit('/').next()?.parse().ok()?;
                Some((peer, PeerAddrs::from_bytes(&v)))
            })
            .collect()
    }
}

/// The most requests waiting for the patient's answer that letters may add to.
pub const MAX_PENDING: usize = 32;

/// The requesters whose requests wait for an answer and are still open at `now`.
fn pending_requesters<S: Store>(rec: &mut OpenRecord<'_, S>, now: Timestamp) -> Vec<PeerKey> {
    let mut out = Vec::new();
    for (rid, item) in rec.requests() {
        if rec.decision(&rid).is_some() {
            continue;
        }
        if let Ok(r) = grant::request::AccessRequest::from_token(&item.token)
            && r.check_open(now).is_ok()
        {
            out.push(r.body().requester.peer);
        }
    }
    out
}

/// Every record this node left an access request for, at some relay.
pub fn asked_records<S: Store>(vault: &Vault<S>) -> Vec<RecordId> {
    let mut out: Vec<RecordId> = vault
        .local_items(Kind::Asked.prefix())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, _)| Kind::Asked.id_in(&k)?.split('/').next()?.parse().ok())
        .collect();
    out.dedup();
    out
}
