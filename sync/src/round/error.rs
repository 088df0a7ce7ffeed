//! How rounds end: [`RoundOutcome`] and the typed [`RoundError`].

use crate::session::{Report, SyncError};
use hearth_core::ids::{PeerKey, RecordId};
use std::sync::Arc;

/// Why a round failed. The text is what `hearth sync` prints.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RoundError {
    /// The session failed: the peer refused, broke the protocol, or the store failed.
    #[error(transparent)]
    Session(Arc<SyncError>),
    /// This node does not hold the record, or the peer is no party to it here (a stranger's
    /// `Notify`): nothing was sent, and such rounds are not reported.
    #[error("record not held here")]
    NotHeld,
    /// This node was too busy to run the round's store work (the peer retries later).
    #[error("busy")]
    Busy,
    /// The round took more steps than [`super::RoundConfig::max_steps`] (a peer that keeps asking).
    #[error("too many steps in one round")]
    TooManySteps,
    /// [`super::RoundConfig::max_rounds_per_peer`] rounds with this peer were already running.
    #[error("too many rounds with this peer at once")]
    TooManyRounds,
    /// The peer's key is not a valid network identity.
    #[error("not a valid peer id")]
    InvalidPeer,
    /// The network failed to carry the request or its answer.
    #[error("network: {0}")]
    Network(String),
    /// No answer within [`super::RoundConfig::step_timeout`].
    #[error("no answer from the peer in time")]
    Timeout,
    /// The peer answered a request with another kind of message (its fault).
    #[error("the peer answered with something else")]
    UnexpectedAnswer,
    /// The peer answered for another record (its fault).
    #[error("the peer answered for another record")]
    OtherRecord,
}

impl RoundError {
    /// Whether the peer refused this node (it would refuse again: no use retrying soon).
    pub fn is_refusal(&self) -> bool {
        matches!(self, RoundError::Session(e) if matches!(**e, SyncError::Refused(_)))
    }

    /// Whether nothing was to be done: the peer is no party to the record here (say, a
    /// patient's own record, which no one else holds, planned with the node it also holds a
    /// grant from).
    pub fn is_no_party(&self) -> bool {
        matches!(self, RoundError::NotHeld)
            || matches!(self, RoundError::Session(e) if matches!(**e, SyncError::NotAParty))
    }
}

impl From<SyncError> for RoundError {
    fn from(e: SyncError) -> Self {
        RoundError::Session(Arc::new(e))
    }
}

/// How one round ended: the peer, the record, and the last step's report or why it failed.
#[derive(Clone, Debug)]
pub struct RoundOutcome {
    /// The peer.
    pub peer: PeerKey,
    /// The record.
    pub record: RecordId,
    /// The last report, or why the round failed.
    pub result: Result<Report, RoundError>,
}
