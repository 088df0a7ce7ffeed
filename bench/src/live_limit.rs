//! The limit under an edit's delay to an online grantee, measured in the same run as the
//! delay (`live.edit_visible_limit`): the floor ([`live_floor`](crate::live_floor)) plus the
//! work every edit needs, whatever node makes it (`live.edit_work_median`).
//!
//! That work is what the design asks of each edit and automerge asks of each change, and
//! nothing a node could choose to skip:
//!
//! - on the patient's side, the note put into its section's document (which holds the notes
//!   before it), the change committed and its bytes taken, and the bundle sealed (the change
//!   encrypted under the section key, the header signed);
//! - on the grantee's side, the bundle decoded, its signature checked (strict, never from the
//!   memo of signatures seen before: a bundle arriving from a peer is new), its payload
//!   decrypted and the change's head read.
//!
//! The notes are the very items the timed edits wrote (their keys, their versions' JSON
//! text), put in the same order into a document that starts as the edits' section did. Each
//! sample runs after the same pause as an edit, on a thread of the blocking pool, as an edit's
//! command does; the grantee's part runs right after the patient's on the same thread, so it
//! finds warm what the patient's part warmed, which an edit's grantee (another thread, after
//! the frame's trip) would not: the limit errs low.
//!
//! Left out, as the node's own work: opening the record (its keys and directory), the entry's
//! schema and the permission checks, loading the section, the check of what to announce, the
//! hand-overs between threads, and the grantee's rights check and opening of its record.

use crate::live_floor::PAUSE;
use anyhow::{Context, Result};
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, ROOT};
use hearth_core::bundle::{Bundle, read_change_head};
use hearth_core::crypto::SymmetricKey;
use hearth_core::ids::{BundleHash, RecordId, SectionId};
use hearth_core::keys::signing_key;
use hearth_core::test_utils::TestRng;
use hearth_core::time::Timestamp;
use hearth_node::os::now;
use std::time::{Duration, Instant};

/// The patient's side of the work: a section's document, the key it is sealed under, and the
/// device that signs.
struct Writer {
    doc: AutoCommit,
    key: SymmetricKey,
    author: ed25519_dalek::SigningKey,
    rng: TestRng,
    /// The last bundle sealed: its number and hash.
    last: Option<(u64, BundleHash)>,
}

impl Writer {
    /// A writer whose section's document holds `first`, as one change.
    fn new(first: (String, String)) -> Result<Writer> {
        let mut rng = TestRng::new(41);
        let author = signing_key(&mut rng);
        let key = SymmetricKey::generate(&mut rng);
        let mut doc =
            AutoCommit::new().with_actor(ActorId::from(author.verifying_key().to_bytes()));
        doc.put(ROOT, first.0, first.1)?;
        doc.commit();
        Ok(Writer {
            doc,
            key,
            author,
            rng,
            last: None,
        })
    }

    /// One edit's work (see the module docs): `item` written as a change and sealed, then the
    /// bundle taken as a grantee takes it.
    fn work(&mut self, (k, v): (String, String), at: Timestamp) -> Result<()> {
        // The patient's side.
        self.doc.put(ROOT, k, v)?;
        self.doc
            .commit_with(CommitOptions::default().with_time(at.as_millis() / 1000));
        let payload = zeroize::Zeroizing::new(
            self.doc
                .get_last_local_change()
                .context("the change just committed")?
                .raw_bytes()
                .to_vec(),
        );
        let seq = self.last.map_or(1, |(seq, _)| seq + 1);
        let bundle = Bundle::seal(
            RecordId([1; 32]),
            SectionId([2; 16]),
            seq,
            self.last.map(|(_, hash)| hash),
            0,
            at,
            &self.key,
            &payload,
            &self.author,
            &mut self.rng,
        )?;
        self.last = Some((seq, bundle.hash()));
        // The grantee's side.
        let arrived = Bundle::decode(bundle.encoded())?;
        arrived.verify()?;
        let opened = zeroize::Zeroizing::new(arrived.open(&self.key)?);
        read_change_head(&opened)?;
        Ok(())
    }
}

/// One sample of the work per item after the first (which starts the document), each after
/// the pause (see the module docs).
pub(crate) async fn edit_work(items: Vec<(String, String)>) -> Result<Vec<Duration>> {
    let mut items = items.into_iter();
    let first = items.next().context("the edits' section holds no entry")?;
    let mut writer = Writer::new(first)?;
    let mut work = Vec::with_capacity(items.len());
    for item in items {
        tokio::time::sleep(PAUSE).await;
        let (back, took) = tokio::task::spawn_blocking(move || {
            let t = Instant::now();
            let done = writer.work(item, now());
            (writer, done.map(|()| t.elapsed()))
        })
        .await?;
        writer = back;
        work.push(took?);
    }
    Ok(work)
}
