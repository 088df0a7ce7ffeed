//! Linking a patient's devices: `hearth device link` on the device that holds the record root
//! key, `hearth init --join CODE` on the new one.
//!
//! The protocol (a one-time code, SPAKE2 on it, then a sealed certificate and key wraps), the
//! root holder's slot and the joiner's steps are sans-I/O state in [`hearth_sync::pairing`]
//! (see its docs). The live node holds the slot and answers the new device (`live::PairingSlot`);
//! this module maps pairing errors to exit codes and gives the joiner this node's random
//! generator.

use crate::fail::{Failure, code};
use hearth_sync::pairing::{self, CodeError, JoinError, OpenError};
use hearth_sync::protocol::Message;

pub use hearth_sync::pairing::{CODE_PREFIX, DEFAULT_TTL, LinkCode, LinkOutcome, Welcome};

impl From<CodeError> for Failure {
    fn from(e: CodeError) -> Self {
        Failure::new(code::INVALID, e.to_string())
    }
}

impl From<OpenError> for Failure {
    fn from(e: OpenError) -> Self {
        Failure::new(code::IO, e.to_string())
    }
}

impl From<JoinError> for Failure {
    fn from(e: JoinError) -> Self {
        let code = match &e {
            e if e.is_integrity() => code::INTEGRITY,
            JoinError::Encode => code::IO,
            _ => code::REFUSED,
        };
        Failure::new(code, e.to_string())
    }
}

/// The joiner's side, one step at a time (the caller moves the messages).
pub struct Joiner<'a>(pairing::Joiner<'a>);

impl<'a> Joiner<'a> {
    /// Starts joining with `code` as `identity` (fresh keys, not yet saved anywhere).
    pub fn new(code: &'a LinkCode, identity: &'a hearth_core::keys::Identity) -> Self {
        Joiner(pairing::Joiner::new(code, identity))
    }

    /// The first message.
    pub fn start(&mut self) -> Message {
        self.0.start(&mut crate::os::os_rng())
    }

    /// Handles the root holder's PAKE message: the sealed join request to send next.
    pub fn on_pake(&mut self, msg: Message) -> Result<Message, Failure> {
        Ok(self.0.on_pake(msg, &mut crate::os::os_rng())?)
    }

    /// Handles the welcome: checks everything in it against the record root and this
    /// device's keys.
    pub fn on_welcome(&mut self, msg: Message) -> Result<Welcome, Failure> {
        Ok(self.0.on_welcome(msg)?)
    }
}
