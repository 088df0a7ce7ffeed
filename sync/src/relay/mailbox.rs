//! Mailboxes at a relay: letters left for a record's inbox or for a peer, kept until their
//! recipient collects and acknowledges them, or for [`RETENTION_MS`]. The relay cannot read
//! them ([`hearth_core::letter`]); it bounds how many it keeps.

use super::wire::{Address, Letter};
use crate::session::SyncError;
use hearth_core::ids::PeerKey;
use hearth_core::ledger::{Key, Kind};
use hearth_core::record::Vault;
use hearth_core::store::Store;
use hearth_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteArray;

/// Letters kept per mailbox.
pub const LETTERS_PER_MAILBOX: usize = 64;
/// Letters one sender may have waiting in one mailbox (so one sender cannot fill it).
pub const LETTERS_PER_SENDER: usize = 4;
/// Letters kept in all.
pub const MAX_LETTERS: usize = 10_000;
/// How long a letter waits for its recipient.
pub const RETENTION_MS: i64 = 30 * 86_400_000;

#[derive(Serialize, Deserialize)]
struct Kept {
    letter: Letter,
    at: Timestamp,
    /// Who left it (the transport-authenticated key).
    from: PeerKey,
}

/// The relay's mailboxes, in its vault.
pub(super) struct Mailboxes<'a, S: Store> {
    pub(super) vault: &'a Vault<S>,
}

fn hex(id: &[u8; 32]) -> String {
    data_encoding::HEXLOWER.encode(id)
}

impl<S: Store> Mailboxes<'_, S> {
    /// The letters of `mailbox`, with their keys, oldest first.
    fn items(&self, mailbox: &str) -> Result<Vec<(String, Kept)>, SyncError> {
        let prefix = format!("{}{mailbox}/", Kind::Letter.prefix());
        Ok(self
            .vault
            .local_items(&prefix)?
            .into_iter()
            .filter_map(|(k, v)| Some((k, serde_ipld_dagcbor::from_slice(&v).ok()?)))
            .collect())
    }

    /// Letters kept in all.
    pub(super) fn count(&self) -> Result<usize, SyncError> {
        Ok(self.vault.local_items(Kind::Letter.prefix())?.len())
    }

    /// Keeps each of `letters` that `may_keep` allows, within the bounds; returns the ids of
    /// those taken, and of those `echo` says to answer as taken anyway (a letter for a record
    /// this relay does not keep is dropped with the same answer as a kept one).
    pub(super) fn post(
        &self,
        from: &PeerKey,
        letters: &[Letter],
        may_keep: &dyn Fn(&Address) -> bool,
        echo: &dyn Fn(&Address) -> bool,
        now: Timestamp,
    ) -> Result<Vec<ByteArray<32>>, SyncError> {
        let mut taken = Vec::new();
        let mut total = self.count()?;
        for l in letters {
            let id = l.id();
            let mailbox = l.to.mailbox();
            let held = self.prune(&mailbox, now)?;
            let dup = held.iter().any(|(_, k)| k.letter.id() == id);
            let mine = held.iter().filter(|(_, k)| k.from == *from).count();
            let room = held.len() < LETTERS_PER_MAILBOX
                && mine < LETTERS_PER_SENDER
                && total < MAX_LETTERS;
            if may_keep(&l.to) && room && !dup {
                let kept = Kept {
                    letter: l.clone(),
                    at: now,
                    from: *from,
                };
                let bytes = serde_ipld_dagcbor::to_vec(&kept)
                    .map_err(|_| SyncError::Protocol("cannot encode a letter"))?;
                let key = format!("{:016x}-{}", now.as_millis().max(0), hex(&id));
                self.vault
                    .put_local(&Key::Letter(&mailbox, &key).text(), &bytes)?;
                total += 1;
                taken.push(ByteArray::new(id));
            } else if dup || echo(&l.to) {
                taken.push(ByteArray::new(id));
            }
        }
        Ok(taken)
    }

    /// Drops the letters of `mailbox` older than [`RETENTION_MS`]; returns the rest.
    fn prune(&self, mailbox: &str, now: Timestamp) -> Result<Vec<(String, Kept)>, SyncError> {
        let (old, keep): (Vec<_>, Vec<_>) = self
            .items(mailbox)?
            .into_iter()
            .partition(|(_, k)| now.as_millis().saturating_sub(k.at.as_millis()) > RETENTION_MS);
        self.vault
            .delete_local(&old.into_iter().map(|(k, _)| k).collect::<Vec<_>>())?;
        Ok(keep)
    }

    /// The letters waiting in `mailboxes`, at most `max`, oldest first.
    pub(super) fn collect(
        &self,
        mailboxes: &[String],
        max: usize,
        now: Timestamp,
    ) -> Result<Vec<Letter>, SyncError> {
        let mut out = Vec::new();
        for m in mailboxes {
            out.extend(self.prune(m, now)?.into_iter().map(|(_, k)| k.letter));
        }
        out.truncate(max);
        Ok(out)
    }

    /// Deletes the letters of `mailboxes` whose ids are in `ids`; returns the ids processed.
    pub(super) fn ack(
        &self,
        mailboxes: &[String],
        ids: &[ByteArray<32>],
    ) -> Result<Vec<ByteArray<32>>, SyncError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut gone = Vec::new();
        for m in mailboxes {
            for (k, kept) in self.items(m)? {
                if ids.iter().any(|i| **i == kept.letter.id()) {
                    gone.push(k);
                }
            }
        }
        self.vault.delete_local(&gone)?;
        Ok(ids.to_vec())
    }
}
